import { execFileSync } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { installCleanup, spawnPinned } from './lib/processes.js';
import { writeLatest } from './lib/results.js';

/**
 * `npm run bench:wakeup`: what one process hop costs on this machine, with no proxy code at all.
 * A one-byte ping-pong over loopback TCP (no Nagle) between this driver and an echo, both Node
 * event loops, so each round trip is two hops: a write, the peer's epoll waking, its callback, and
 * back. Measured back to back (`busy`: the peer's core never sleeps) and with a pause between
 * pings (`idle`: the pause of a paced stream, so the peer's core sleeps and is woken), with the
 * echo on the other core, on the driver's core, and inside the driver (no hop: the "direct" path
 * of bench:stream, whose client and upstream share one process).
 *
 * Why it exists: bench:stream's target compares a proxied stream's time to first token with a
 * direct stream whose client and upstream share a process. A proxy puts four hops on that path
 * (client → proxy → upstream → proxy → client) that the direct stream does not have; this bench
 * prices them, so the floor proxy's and Switchyard's added TTFT can be read against what the hops
 * alone cost here.
 *
 * The driver runs on core 1 (BENCH_LOAD_CORE), the remote echo on core 0 (BENCH_SUT_CORE).
 * `--quick`: fewer pings; prints, writes nothing.
 */
const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const quick = values.quick;
const BUSY = quick ? 500 : 5_000;
const IDLE = quick ? 50 : 400;
const PAUSE_MS = Number(process.env['BENCH_PAUSE_MS'] ?? 20);
const SUT_CORE = Number(process.env['BENCH_SUT_CORE'] ?? 0);
const LOAD_CORE = Number(process.env['BENCH_LOAD_CORE'] ?? 1);

/** The echo: every byte read is written back at once. */
const ECHO = `
const net = require('node:net');
const server = net.createServer((s) => { s.setNoDelay(true); s.on('data', (d) => s.write(d)); });
server.listen(0, '127.0.0.1', () => process.stdout.write('READY ' + server.address().port + '\\n'));
process.once('SIGTERM', () => process.exit(0));
`;

interface Rtt {
  readonly pings: number;
  readonly p50_us: number;
  readonly p90_us: number;
  readonly p99_us: number;
}

/** Round trips of one byte on `socket`, `pauseMs` apart (0: back to back). */
async function pingPong(socket: Socket, pings: number, pauseMs: number): Promise<Rtt> {
  const rtts: number[] = [];
  for (let i = 0; i < pings; i++) {
    const t0 = performance.now();
    await new Promise<void>((ok) => {
      socket.once('data', () => ok());
      socket.write('x');
    });
    rtts.push((performance.now() - t0) * 1000);
    if (pauseMs > 0) await new Promise((ok) => setTimeout(ok, pauseMs));
  }
  rtts.sort((a, b) => a - b);
  const q = (p: number): number =>
    Math.round(rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))]!);
  return { pings, p50_us: q(0.5), p90_us: q(0.9), p99_us: q(0.99) };
}

async function open(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((ok, fail) => socket.once('connect', ok).once('error', fail));
  return socket;
}

async function measure(port: number, label: string): Promise<{ busy: Rtt; idle: Rtt }> {
  const socket = await open(port);
  try {
    await pingPong(socket, 200, 0); // warm-up: connection, JIT
    const busy = await pingPong(socket, BUSY, 0);
    process.stderr.write(`[bench] ${label}: busy done, idle ${IDLE} pings ${PAUSE_MS} ms apart\n`);
    const idle = await pingPong(socket, IDLE, PAUSE_MS);
    return { busy, idle };
  } finally {
    socket.destroy();
  }
}

async function main(): Promise<void> {
  execFileSync('taskset', ['-a', '-p', '-c', String(LOAD_CORE), String(process.pid)], {
    stdio: 'ignore',
  });
  const result: Record<string, unknown> = {
    at: new Date().toISOString(),
    loadavg: loadavg().map((v) => Math.round(v * 100) / 100),
    pause_ms: PAUSE_MS,
    driver_core: LOAD_CORE,
  };
  // In process: the echo is a server in this driver (no process hop, as bench:stream's direct path).
  const local = createServer((s) => {
    s.setNoDelay(true);
    s.on('data', (d) => s.write(d));
  });
  await new Promise<void>((ok) => local.listen(0, '127.0.0.1', ok));
  installCleanup(() => undefined); // stops the echo children on any exit
  result['in_process'] = await measure((local.address() as AddressInfo).port, 'in process');
  local.close();
  for (const [name, core] of [
    ['other_core', SUT_CORE],
    ['same_core', LOAD_CORE],
  ] as const) {
    const echo = await spawnPinned({
      name: `echo-${name}`,
      core,
      nodeArgs: ['-e', ECHO],
      ready: /READY (\d+)/,
      stdout: 'pipe',
    });
    try {
      result[name] = { echo_core: core, ...(await measure(Number(echo.url), name)) };
    } finally {
      await echo.stop();
    }
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  writeLatest('wakeup', result, quick);
}

await main();
