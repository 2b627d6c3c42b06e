import type {
  VectorIndex,
  VectorRecord,
  VectorShard,
  VectorShardDescriptor,
} from '../contracts/vector-index.js';
import { syError } from '../core/errors.js';
import { LocalIndex } from './local-index.js';
import { keyAdmits } from './shard-key.js';
import type { ShardRouter } from './shard-router.js';

export interface SplitOptions {
  /** Records copied per step; the event loop (and searches) run between steps. */
  readonly batch?: number;
  readonly onProgress?: (copied: number, total: number) => void;
}

/** The two halves of a shard's key space: `hash % 2b` is `p` or `p + b` where it was `p` of `b`. */
export function childDescriptors(
  parent: VectorShardDescriptor,
): [VectorShardDescriptor, VectorShardDescriptor] {
  const p = parent.key.partition ?? { buckets: 1, bucket: 0 };
  const buckets = p.buckets * 2;
  const child = (bucket: number): VectorShardDescriptor => ({
    ...parent,
    id: `${parent.id}.${buckets}-${bucket}`,
    key: { ...parent.key, partition: { buckets, bucket } },
  });
  return [child(p.bucket), child(p.bucket + p.buckets)];
}

/**
 * Splits a hot in-process shard in two, online. The router first sends new writes to the
 * children and lets reads visit parent and children (a record copied but not yet dropped from
 * the parent is merged once); the parent's records are then copied over in small steps; last,
 * the parent leaves routing, its in-flight searches finish, and it is closed. No query is
 * dropped or answered without a record that exists throughout.
 */
export async function splitShard(
  router: ShardRouter,
  collection: string,
  shardId: string,
  makeIndex: (descriptor: VectorShardDescriptor) => Promise<VectorIndex>,
  options: SplitOptions = {},
): Promise<readonly VectorShard[]> {
  const parent = router.shards(collection).find((s) => s.descriptor.id === shardId);
  if (parent === undefined) throw syError('SY_ERR_VECTOR_SHARD_NOT_FOUND', shardId);
  if (!(parent.index instanceof LocalIndex) || parent.descriptor.location.kind !== 'local') {
    throw syError('SY_ERR_VECTOR_INVALID', `only in-process shards split online (${shardId})`);
  }
  const source = parent.index;
  const children: VectorShard[] = [];
  for (const descriptor of childDescriptors(parent.descriptor))
    children.push({ descriptor, index: await makeIndex(descriptor) });
  router.beginSplit(collection, shardId, children);
  const batch = options.batch ?? 1_000;
  const total = source.liveCount();
  let copied = 0;
  const records = source.records();
  let exhausted = false;
  while (!exhausted) {
    const step: VectorRecord[] = [];
    while (step.length < batch) {
      const next = records.next();
      if (next.done === true) {
        exhausted = true;
        break;
      }
      step.push(next.value);
    }
    if (step.length === 0) break;
    // Both children are written in this tick, from what the parent holds now.
    await Promise.all(
      children.map((child) => {
        const mine = step.filter((rec) => keyAdmits(child.descriptor.key, rec.id, rec.meta));
        return mine.length === 0 ? Promise.resolve(undefined) : child.index.upsert(mine);
      }),
    );
    copied += step.length;
    options.onProgress?.(copied, total);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const old = await router.finishSplit(collection, shardId);
  await old.index.close();
  return children;
}
