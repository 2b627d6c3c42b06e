import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { describe, it } from 'vitest';
import { PostgresRegistryStore } from '../../src/state/postgres-registry-store.js';
import { registryStoreContract } from './registry-store.contract.js';

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

const up = await pgUp();
if (!up && process.env['CI'] === 'true') {
  describe('RegistryStore contract: PostgreSQL', () => {
    it('needs the PostgreSQL at 127.0.0.1:5432 in CI', () => {
      throw new Error(`PostgreSQL is unreachable at ${PG_URL} and CI=true`);
    });
  });
} else if (!up) {
  console.warn(`skipping the PostgreSQL registry store contract: nothing at ${PG_URL}`);
}

const run = randomBytes(4).toString('hex');
let n = 0;
registryStoreContract(
  'PostgreSQL',
  async () => {
    // A schema per store: parallel test files and repeated runs never share tables.
    const store = await PostgresRegistryStore.open({ url: PG_URL, schema: `sy_reg_${run}_${n++}` });
    return {
      store,
      close: async () => {
        await store.dropSchema();
        await store.close();
      },
    };
  },
  up ? false : `no PostgreSQL at ${PG_URL}`,
);
