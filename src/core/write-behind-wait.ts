import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from './clock.js';

/** The first pause before the store is read again; each next pause doubles. */
const FIRST_PAUSE_MS = 50;
/** Beyond one flush interval: the writing replica's write itself takes time. */
const WRITE_MARGIN_MS = 500;
/** The longest a read waits, whatever the flush interval (a long one would hold it minutes). */
const MAX_WAIT_MS = 5_000;
/** Reads waiting at once; past it, the store is read once (no waiting). */
const MAX_WAITING = 64;

/**
 * Reads a shared store for a row another replica writes behind in batches (#15): the inference
 * log's request record, a release exposure. The store is read again after 50, 100, 200 ... ms
 * until one flush interval and a 0.5 s margin have passed (5 s at most; 64 reads at most waiting
 * at once per instance, past which the store is read once). Nothing runs behind the caller: it
 * gets the row or, after the bounded wait, undefined.
 */
export class WriteBehindWait {
  private waiting = 0;

  constructor(private readonly clock: Clock) {}

  async find<T>(
    read: () => Promise<T | undefined>,
    /** How long a row may sit in the writer's buffer (its flush interval). */
    flushMs: number,
    /** The caller went away: the wait stops. */
    signal?: AbortSignal,
  ): Promise<T | undefined> {
    const budget =
      this.waiting < MAX_WAITING ? Math.min(flushMs + WRITE_MARGIN_MS, MAX_WAIT_MS) : 0;
    const start = this.clock.now();
    this.waiting++;
    try {
      for (let pause = FIRST_PAUSE_MS; ; pause *= 2) {
        const row = await read();
        if (row !== undefined) return row;
        const left = budget - (this.clock.now() - start);
        if (left <= 0 || signal?.aborted === true) return undefined;
        await sleep(Math.min(pause, left), undefined, { signal }).catch(() => undefined);
      }
    } finally {
      this.waiting--;
    }
  }
}
