import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { describe, it } from 'vitest';

export const PG_URL = process.env['SY_TEST_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Whether something accepts TCP connections on the PostgreSQL port within half a second. */
function pgUp(): Promise<boolean> {
  const u = new URL(PG_URL);
  return new Promise((resolve) => {
    const socket = createConnection({ host: u.hostname, port: Number(u.port || 5432) });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => done(true));
  });
}

/**
 * Whether PostgreSQL is there for `suite`: `false` when it is, else the skip reason (printed).
 * Under CI=true an absent server is a failing test, never a skip.
 */
export async function postgresSkip(suite: string): Promise<string | false> {
  if (await pgUp()) return false;
  if (process.env['CI'] === 'true') {
    describe(suite, () => {
      it('needs the PostgreSQL at 127.0.0.1:5432 in CI', () => {
        throw new Error(`PostgreSQL is unreachable at ${PG_URL} and CI=true`);
      });
    });
    return false;
  }
  console.warn(`skipping ${suite}: nothing at ${PG_URL}`);
  return `no PostgreSQL at ${PG_URL}`;
}

/** A schema name of its own per call: parallel files and repeated runs never share tables. */
export const freshSchema = (prefix: string): string =>
  `${prefix}_${randomBytes(4).toString('hex')}`;

/**
 * A PostgreSQL store on a schema of its own, as the contract suites take one: the store, more
 * stores on the same schema (a restart, or another replica), and a close that closes them all
 * and drops the schema.
 */
export async function schemaStores<
  S extends { close(): Promise<void>; dropSchema(): Promise<void> },
>(
  prefix: string,
  open: (o: { url: string; schema: string }) => Promise<S>,
): Promise<{ store: S; another: () => Promise<S>; close: () => Promise<void> }> {
  const schema = freshSchema(prefix);
  const store = await open({ url: PG_URL, schema });
  const others: S[] = [];
  return {
    store,
    another: async () => {
      const s = await open({ url: PG_URL, schema });
      others.push(s);
      return s;
    },
    close: async () => {
      await Promise.all(others.map((s) => s.close()));
      await store.dropSchema();
      await store.close();
    },
  };
}
