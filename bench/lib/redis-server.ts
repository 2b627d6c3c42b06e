import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createConnection, createServer, type AddressInfo } from 'node:net';

/**
 * A private `redis-server` a test or a fault bench starts on a free loopback port, so it may
 * freeze (SIGSTOP), wake (SIGCONT) and kill it without touching the shared Redis on 6379.
 */
export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  /** Sends a signal by pid, if the server still runs (SIGSTOP, SIGCONT, SIGKILL, ...). */
  signal(sig: NodeJS.Signals): void;
  /** Wakes it if frozen and kills it; resolves once it has exited. */
  stop(): Promise<void>;
}

/** Whether `redis-server` is installed. */
export const haveRedisServer = spawnSync('redis-server', ['--version']).status === 0;

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Whether a Redis answers PING on `port` within `timeoutMs`. */
export function pingRedis(port: number, timeoutMs = 200): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts a redis-server (no persistence) on `port` (a free one by default); resolves once it answers. */
export async function startRedisServer(port?: number): Promise<PrivateRedis> {
  const p = port ?? (await freePort());
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  const signal = (sig: NodeJS.Signals): void => {
    if (child.pid !== undefined && running()) process.kill(child.pid, sig);
  };
  process.once('exit', () => signal('SIGKILL'));
  for (let i = 0; i < 100; i++) {
    if (await pingRedis(p)) {
      return {
        port: p,
        url: `redis://127.0.0.1:${p}`,
        signal,
        stop: async () => {
          if (!running()) return;
          signal('SIGCONT');
          signal('SIGKILL');
          await exited;
        },
      };
    }
    if (!running()) break;
    await sleep(50);
  }
  signal('SIGKILL');
  throw new Error(`redis-server did not start on port ${p}`);
}
