import type { ClusterPeer } from '../contracts/cluster.js';
import type { Logger } from '../contracts/logger.js';
import type { ConsentPersistence, ConsentRecord } from '../contracts/policy.js';
import { PeerCopy } from '../core/peer-copy.js';
import type { ConsentBook } from '../privacy/consent-book.js';

/** A worker's consent change, for every other worker. */
export const CONSENT_TOPIC = 'consent.record';
/** A starting worker asks one that is up for the next chunk of the consent records it holds. */
export const CONSENT_COPY_TOPIC = 'consent.copy';

export interface SharedConsentPersistence extends ConsentPersistence {
  /**
   * Copies the records a worker that is up holds into this worker's book (the newer of two
   * versions of a user's record is kept); resolves with how many came (0 when no other worker is
   * up). Changes made meanwhile reach this worker as broadcasts, applied after the copy, before it
   * serves.
   */
  join(): Promise<number>;
}

/**
 * Consent shared by the workers of `serve --workers N` (#17): a change is stored (when a store is
 * configured), then applied by every other worker before the change resolves, so the next request
 * sees it whatever worker serves it. The primary keeps none of it: a worker that starts loads the
 * records from the store, or copies them from a worker that is up (`join`). `onRemote` runs once
 * another worker's record is learned (the worker-local purge).
 */
export function sharedConsent(
  inner: ConsentPersistence | undefined,
  cluster: ClusterPeer,
  onRemote: (before: ConsentRecord | undefined, after: ConsentRecord) => Promise<void>,
  held: () => ConsentBook | undefined,
  logger: Logger,
  copyChunk?: number,
): SharedConsentPersistence {
  const listeners: ((r: ConsentRecord) => void)[] = [];
  // A change made in another worker arrives over IPC and, with a Redis consent store, over Redis
  // too, in either order: whichever comes first is compared with what this worker held, so the
  // worker-local purge runs once, never skipped because the other path was already learned.
  const deliver = async (r: ConsentRecord): Promise<void> => {
    const before = held()?.get(r.tenant, r.userId);
    for (const l of listeners) l(r);
    await onRemote(before, r);
  };
  cluster.on(CONSENT_TOPIC, (body) => deliver(body as ConsentRecord));
  // Resolves once Redis delivers changes: the book loads the stored records after it.
  const innerSubscribed = inner?.subscribe?.((r) => {
    deliver(r).catch((err: unknown) =>
      logger.error({ err: String(err) }, 'consent: a change from another worker was not applied'),
    );
  });
  const copy = new PeerCopy<ConsentRecord>(cluster, CONSENT_COPY_TOPIC, {
    source: () => held()?.entries() ?? [].values(),
    ...(copyChunk === undefined ? {} : { chunk: copyChunk }),
  });
  return {
    loadAll: () => inner?.loadAll() ?? [],
    save: async (record) => {
      await inner?.save(record);
      // Required: a worker that cannot apply it is restarted rather than serving without it.
      await cluster.broadcast(CONSENT_TOPIC, record, { required: true });
    },
    subscribe: (on) => {
      listeners.push(on);
      return innerSubscribed;
    },
    // The worker it comes from purged its features when it learned of each revocation; the
    // feature values this worker copied come from there too, so only the records are taken.
    join: () =>
      copy.copy((records) => {
        for (const r of records) for (const l of listeners) l(r);
        return records.length;
      }),
    close: () => {
      copy.close();
      return inner?.close();
    },
  };
}
