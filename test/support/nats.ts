import { createConnection } from 'node:net';

export const NATS_URL = process.env['SY_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222';

/** Whether something accepts TCP connections on the NATS port within half a second. */
function natsUp(): Promise<boolean> {
  const u = new URL(NATS_URL);
  return new Promise((resolve) => {
    const socket = createConnection({ host: u.hostname, port: Number(u.port || 4222) });
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
 * For a test file that needs NATS with JetStream: true when it can run. Under `CI=true` an
 * absent server is an error, never a skip; otherwise the skip is printed with its reason.
 */
export async function natsOrSkip(what: string): Promise<boolean> {
  if (await natsUp()) return true;
  if (process.env['CI'] === 'true') throw new Error(`${what}: nothing at ${NATS_URL} and CI=true`);
  console.warn(`skipping ${what}: nothing at ${NATS_URL}`);
  return false;
}
