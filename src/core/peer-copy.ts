import { randomUUID } from 'node:crypto';
import type { ClusterPeer } from '../contracts/cluster.js';

interface CopyAsk {
  readonly transfer: string;
  readonly max: number;
}

interface CopyChunk<T> {
  readonly items: readonly T[];
  readonly done: boolean;
}

export interface PeerCopyOptions<T> {
  /** Items per chunk (default 2,000; the worker handing them out caps it at 10,000). */
  readonly chunk?: number;
  /** How long a copy may pause before the worker handing it out forgets it (default 60 s). */
  readonly idleMs?: number;
  /** What this worker holds, for a worker that starts: a live iterator is fine. */
  readonly source: () => Iterator<T>;
}

/**
 * What a worker of `serve --workers N` holds in memory and every worker must hold alike (the
 * embedded feature values, consent records: #17), copied to a worker that starts before it serves.
 * `serve` answers the `topic` questions of starting workers; `copy` asks one worker that is up for
 * chunk after chunk (`ClusterPeer.askPeer`). Changes made during a copy are not in it for sure:
 * they reach the starting worker as broadcasts, which it applies after the copy, before it serves,
 * so whoever applies the items must keep the newer of two versions of one item.
 */
export class PeerCopy<T> {
  private readonly copies = new Map<
    string,
    { readonly items: Iterator<T>; timer: NodeJS.Timeout | undefined }
  >();
  private readonly chunk: number;
  private readonly idleMs: number;

  constructor(
    private readonly cluster: ClusterPeer,
    private readonly topic: string,
    private readonly options: PeerCopyOptions<T>,
  ) {
    this.chunk = options.chunk ?? 2_000;
    this.idleMs = options.idleMs ?? 60_000;
    cluster.on(topic, (body) => this.handOut(body as CopyAsk));
  }

  /**
   * Copies what another worker holds, chunk by chunk, into `apply`; resolves with the sum of what
   * `apply` returned (0 when no other worker is up). A chunk lost on the way (the worker handing
   * it out died or stalled, and may have moved on past it) starts the copy over, from whichever
   * worker is up; rejects after three such failures.
   */
  async copy(apply: (items: readonly T[]) => number): Promise<number> {
    let transfer = randomUUID();
    let stored = 0;
    for (let failures = 0; ;) {
      let chunk: CopyChunk<T> | undefined;
      try {
        chunk = (await this.cluster.askPeer(this.topic, {
          transfer,
          max: this.chunk,
        } satisfies CopyAsk)) as CopyChunk<T> | undefined;
      } catch (err) {
        if (++failures >= 3) throw err;
        transfer = randomUUID();
        continue;
      }
      if (chunk === undefined) return stored;
      stored += apply(chunk.items);
      if (chunk.done) return stored;
    }
  }

  private handOut(ask: CopyAsk): CopyChunk<T> {
    let copy = this.copies.get(ask.transfer);
    if (copy === undefined) {
      copy = { items: this.options.source(), timer: undefined };
      this.copies.set(ask.transfer, copy);
    } else clearTimeout(copy.timer);
    // A live iterator: items changed meanwhile may be seen or not; the starting worker hears of
    // those changes anyway.
    const items: T[] = [];
    const max = Math.max(1, Math.min(ask.max, 10_000));
    while (items.length < max) {
      const next = copy.items.next();
      if (next.done === true) {
        this.copies.delete(ask.transfer);
        return { items, done: true };
      }
      items.push(next.value);
    }
    copy.timer = setTimeout(() => this.copies.delete(ask.transfer), this.idleMs);
    copy.timer.unref();
    return { items, done: false };
  }

  /** Forgets the copies being handed out. */
  close(): void {
    for (const c of this.copies.values()) clearTimeout(c.timer);
    this.copies.clear();
  }
}
