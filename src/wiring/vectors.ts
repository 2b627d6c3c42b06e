import { resolve } from 'node:path';
import type { ConfigSnapshot } from '../config/load.js';
import type { ConsentBook } from '../privacy/consent-book.js';
import { ResidencyMap } from '../privacy/residency.js';
import type { VectorHost } from '../retrieval/vector-host.js';
import type { WiringDeps } from './shared.js';

/**
 * Vector shards (#7): the node's local shards from disk, remote ones as clients, and the router
 * over them. Opened once from the first config (shard changes need a restart). usearch is loaded
 * only when a collection is configured.
 */
export async function openVectors(
  snap: ConfigSnapshot,
  deps: WiringDeps,
  consent: ConsentBook | undefined,
): Promise<VectorHost | undefined> {
  const v = snap.config.vectors;
  if (Object.keys(v.collections).length === 0) return undefined;
  const collections = Object.fromEntries(
    Object.entries(v.collections).map(([name, c]) => [
      name,
      {
        dims: c.dims,
        metric: c.metric,
        index: c.index,
        hnsw: {
          connectivity: c.hnsw.connectivity,
          expansionAdd: c.hnsw.expansion_add,
          expansionSearch: c.hnsw.expansion_search,
          quantization: c.hnsw.quantization,
        },
        shards: c.shards.map((s) => ({
          ...s,
          entityTypes: s.entity_types,
          maxSize: s.max_size,
          ttlMs: s.ttl_ms,
          apiKey: snap.secrets.shardKeys.get(`${name}/${s.id}`),
        })),
      },
    ]),
  );
  const { VectorHost: Host } = await import('../retrieval/vector-host.js');
  const host = await Host.open(
    {
      node: snap.config.privacy.node.id,
      dataDir: v.data_dir === undefined ? undefined : resolve(snap.dir, v.data_dir),
      scanWorkers: v.scan_workers,
      view: v.view,
      remoteTimeoutMs: v.remote_timeout_ms,
      collections,
    },
    {
      clock: deps.clock,
      random: deps.random,
      residency: new ResidencyMap(snap.config.privacy),
      logger: deps.logger,
    },
  );
  // Revoking consent shrinks the user's vector memory at once: everything on a full revocation,
  // the vectors serving a revoked purpose (`attrs.purpose`, as the policy module reads it) otherwise.
  consent?.onPurge({
    name: 'vectors',
    purge: (r) =>
      host.purgeWhere(
        r.tenant,
        r.all
          ? { userIds: [r.userId] }
          : { userIds: [r.userId], attrs: { purpose: [...r.purposes] } },
      ),
  });
  deps.metrics.trackVectorShards(() => host.router.stats());
  deps.metrics.trackTenantStorage('vectors', () => Promise.resolve(host.count.byTenant()));
  return host;
}
