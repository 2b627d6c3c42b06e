import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * The network of a multi-node test. Preferred: one Linux network namespace per node, each with a
 * veth pair into a bridge this test makes, so every node has its own address and sees only that
 * network (TOOLCHAIN.md, "multi-node tests on one machine"). The test process stays in the host
 * namespace, on the bridge's address: nodes reach it there (its upstreams, and relays to the
 * shared services that listen on the host's loopback only). Fallback, with the reason printed:
 * every node on 127.0.0.1, one port each.
 */
export interface TestNetwork {
  readonly kind: 'netns' | 'loopback';
  /** Why the network is loopback (namespaces not allowed here), when it is. */
  readonly reason?: string;
  /** The test process's address as the nodes see it: upstreams listen here. */
  readonly hostAddress: string;
  /** A node's place: its namespace (none on loopback) and its address. */
  node(name: string): { readonly netns?: string; readonly address: string };
  /** Makes `host:port` on the host's loopback reachable by the nodes; returns the address to use. */
  expose(url: string): Promise<string>;
  close(): Promise<void>;
}

const ip = (...args: string[]): void => {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
};

/** Opens the network for `nodes`: namespaces when `ip netns` works here, else loopback. */
export async function openTestNetwork(nodes: readonly string[]): Promise<TestNetwork> {
  if (process.env['SY_TEST_NETNS'] === '0') return loopback('SY_TEST_NETNS=0');
  if (process.platform !== 'linux') return loopback(`${process.platform} has no ip netns`);
  const tag = randomBytes(3).toString('hex');
  // A /24 of its own per run, one the host does not route yet: runs on one machine (and the
  // host's own networks) never share addresses.
  let routes: string;
  try {
    routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all']).toString();
  } catch (err) {
    return loopback(`no usable ip command (${(err as Error).message})`);
  }
  let subnet = '';
  for (let i = 0; i < 50 && (subnet === '' || routes.includes(`${subnet}.`)); i++)
    subnet = `10.${200 + (randomBytes(1)[0]! % 50)}.${randomBytes(1)[0]!}`;
  const bridge = `sybr${tag}`;
  const made: string[] = [];
  const teardown = (): void => {
    for (const ns of made) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // Already gone.
      }
    }
    made.length = 0;
    try {
      ip('link', 'del', bridge);
    } catch {
      // Never made, or already gone.
    }
  };
  const places = new Map<string, { netns: string; address: string }>();
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('addr', 'add', `${subnet}.1/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    nodes.forEach((name, i) => {
      const ns = `sy${tag}-${i}`;
      const veth = `syv${tag}${i}`;
      const peer = `syp${tag}${i}`;
      const address = `${subnet}.${i + 2}`;
      ip('netns', 'add', ns);
      made.push(ns);
      ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', peer);
      ip('link', 'set', peer, 'master', bridge, 'up');
      ip('link', 'set', veth, 'netns', ns);
      ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', veth);
      ip('-n', ns, 'link', 'set', veth, 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      places.set(name, { netns: ns, address });
    });
  } catch (err) {
    teardown();
    const e = err as { stderr?: Buffer; message?: string };
    const why = e.stderr?.toString().trim() || e.message || String(err);
    return loopback(`network namespaces are not allowed here (${why})`);
  }
  process.once('exit', teardown);
  const hostAddress = `${subnet}.1`;
  if (!(await reachable(hostAddress, places.values().next().value?.netns))) {
    teardown();
    return loopback('the bridge does not carry traffic here');
  }
  const relays: Relay[] = [];
  return {
    kind: 'netns',
    hostAddress,
    node: (name) => {
      const p = places.get(name);
      if (p === undefined) throw new Error(`no node ${name} in this network`);
      return p;
    },
    expose: async (url) => {
      const relay = await startRelay(url, hostAddress);
      relays.push(relay);
      return relay.url;
    },
    close: async () => {
      await Promise.all(relays.map((r) => r.close()));
      teardown();
      process.off('exit', teardown);
    },
  };
}

function loopback(reason: string): TestNetwork {
  console.warn(`multi-node test on loopback: ${reason}`);
  return {
    kind: 'loopback',
    reason,
    hostAddress: '127.0.0.1',
    node: () => ({ address: '127.0.0.1' }),
    expose: (url) => Promise.resolve(url),
    close: () => Promise.resolve(),
  };
}

/** Whether a namespace reaches the host's bridge address (some hosts filter bridged traffic). */
async function reachable(hostAddress: string, netns: string | undefined): Promise<boolean> {
  if (netns === undefined) return false;
  const server = createServer((s) => s.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, hostAddress, () => resolve()));
  const port = (server.address() as AddressInfo).port;
  try {
    const script = `require('net').connect(${port}, '${hostAddress}').on('data', d => { process.stdout.write(String(d)); process.exit(0); }).on('error', () => process.exit(1))`;
    const out = await new Promise<string>((resolve) => {
      // Async: the server above answers from this event loop.
      execFile(
        'ip',
        ['netns', 'exec', netns, process.execPath, '-e', script],
        { timeout: 5_000 },
        (_err, stdout) => resolve(stdout),
      );
    });
    return out === 'ok';
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

export interface Relay {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A TCP relay on `host` to `target` (a service on the host's loopback, or a node): bytes pass
 * unchanged; `onData` sees what the client side sends (a test reads request headers there).
 */
export async function startRelay(
  target: string,
  host: string,
  onData?: (chunk: Buffer) => void,
): Promise<Relay> {
  const t = new URL(target);
  const port = Number(t.port);
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = createConnection({ host: t.hostname, port });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    if (onData !== undefined) inbound.on('data', onData);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()));
  const relayPort = (server.address() as AddressInfo).port;
  const u = new URL(target);
  u.hostname = host;
  u.port = String(relayPort);
  return {
    url: u.toString().replace(/\/$/, ''),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
