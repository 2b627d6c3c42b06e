import { generateKey, hashKey } from '../../src/core/api-key.js';
import type { Clock } from '../../src/core/clock.js';
import { startTestGateway, TEST_SECRET, type TestGateway } from './gateway.js';

/** A gateway node holding vector shards, with an admin (node) key and a plain tenant key. */
export interface VectorNode {
  readonly gw: TestGateway;
  readonly url: string;
  /** Admin key of tenant `acme`: what other nodes use to call the shard API. */
  readonly nodeKey: string;
  /** Plain key of tenant `acme`. */
  readonly acmeKey: string;
  /** Plain key of tenant `globex`. */
  readonly globexKey: string;
  close(): Promise<void>;
}

export interface VectorNodeOptions {
  readonly node: string;
  readonly jurisdiction?: string;
  readonly jurisdictions?: Record<string, { nodes: string[] }>;
  readonly vectors: Record<string, unknown>;
  readonly clock?: Clock;
  /** Extra config sections (privacy purposes, ...). */
  readonly extra?: Record<string, unknown>;
  /** A fixed port (nodes that name each other in their configs); default: 0. */
  readonly port?: number;
  /** A given admin key (other nodes' configs hold it); default: a new one. */
  readonly nodeKey?: string;
}

/** A free loopback port, for nodes that must know each other's URL before they start. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export async function startVectorNode(opts: VectorNodeOptions): Promise<VectorNode> {
  const nodeKey = opts.nodeKey ?? generateKey('sk');
  const acmeKey = generateKey('sk');
  const globexKey = generateKey('sk');
  const extraPrivacy = (opts.extra?.['privacy'] ?? {}) as Record<string, unknown>;
  const gw = await startTestGateway({
    config: {
      ...opts.extra,
      tenants: {
        acme: {
          keys: [
            { id: 'node', hash: hashKey(nodeKey, TEST_SECRET), admin: true },
            { id: 'app', hash: hashKey(acmeKey, TEST_SECRET) },
          ],
        },
        globex: { keys: [{ id: 'app', hash: hashKey(globexKey, TEST_SECRET) }] },
      },
      privacy: {
        ...extraPrivacy,
        node: {
          id: opts.node,
          ...(opts.jurisdiction === undefined ? {} : { jurisdiction: opts.jurisdiction }),
        },
        jurisdictions: opts.jurisdictions ?? {},
      },
      vectors: opts.vectors,
      log: { level: 'warn' },
      ...(opts.port === undefined ? {} : { server: { host: '127.0.0.1', port: opts.port } }),
    },
    options: opts.clock === undefined ? {} : { clock: opts.clock },
  });
  return { gw, url: gw.url, nodeKey, acmeKey, globexKey, close: () => gw.close() };
}
