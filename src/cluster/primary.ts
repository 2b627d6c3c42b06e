import cluster, { type Address, type Worker } from 'node:cluster';
import { MemoryLimiter } from '../admission/memory-limiter.js';
import { LIMITER_TOPIC, runLimiterOps, type LimiterOp } from '../admission/peer-limiter.js';
import { systemClock } from '../core/clock.js';
import {
  isClusterMessage,
  WORKER_COUNT_ENV,
  WORKER_ID_ENV,
  type ClusterMessage,
} from './messages.js';
import { RetainedBroadcasts } from './retained-broadcasts.js';
import { aggregateMetrics, METRICS_COLLECT_TOPIC, METRICS_TOPIC } from './metrics-aggregate.js';

export interface PrimaryOptions {
  /** How many worker processes serve (N >= 1). */
  readonly workers: number;
  /** How long a worker may drain on SIGTERM before it is killed (the config's `server.drain_ms`). */
  readonly drainMs: number;
  /** A line for the operator (stderr). */
  readonly say: (line: string) => void;
  /** How long a worker may take to apply a broadcast before it is restarted (default 5 s). */
  readonly applyTimeoutMs?: number;
}

export interface Primary {
  /** Where the workers listen, once every one of the first N does. */
  readonly url: string;
  /** Sends a signal to every worker (SIGHUP: each reloads its config). */
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM to every worker, waits for them to drain and exit (SIGKILL after `drainMs` + 5 s). */
  close(): Promise<void>;
}

interface Slot {
  readonly id: number;
  worker: Worker;
  startedAt: number;
  /** Until its link says hello, what is sent to it waits here (a message sent earlier is lost). */
  outbox: ClusterMessage[] | undefined;
  /** True once it has opened everything and applies broadcasts as they come. */
  up: boolean;
  /** Restarts in a row that did not live `STABLE_MS` (the backoff's exponent). */
  crashes: number;
}

interface Call {
  resolve(body: unknown): void;
  reject(err: Error): void;
}

/** A worker that lived this long is healthy again: its next crash restarts it at once. */
const STABLE_MS = 30_000;
const BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 15_000;

/**
 * The primary process of `switchyard serve --workers N` (#17). It serves no request itself:
 * node:cluster's primary holds the listening socket and hands connections to the workers round
 * robin (the default on Linux). It holds what the workers must agree on:
 *
 * - the embedded quota limiter: every worker's reserve and settle is decided here, in one
 *   `MemoryLimiter`, so N workers admit exactly what one process would;
 * - broadcasts (mode overrides, consent changes, embedded feature values): relayed to every other
 *   worker, answered once each applied it, and (with `retain`: the mode override) the last one per
 *   topic kept for workers that start later;
 * - questions of one worker for another (`askPeer`: a starting worker's copy of the consent
 *   records and the embedded feature values, which the primary does not keep);
 * - `/metrics`: any worker's scrape is the sum of every worker's registry.
 *
 * A worker that dies is restarted (with backoff while it keeps dying); one that never came up
 * at the start fails the whole start. SIGTERM drains every worker, then exits.
 */
export function startPrimary(o: PrimaryOptions): Promise<Primary> {
  // JSON: for the small limiter batches it costs less than 'advanced' (v8 serializer): measured
  // 30-36 against 49 µs of worker CPU per reserve one at a time.
  cluster.setupPrimary({ serialization: 'json' });
  const limiter = new MemoryLimiter(systemClock);
  const retained = new RetainedBroadcasts();
  const slots = new Map<number, Slot>();
  const slotOf = new WeakMap<Worker, Slot>();
  const calls = new Map<number, Call & { worker: Worker }>();
  const applyTimeoutMs = o.applyTimeoutMs ?? 5_000;
  let nextCall = 1;
  let stopping = false;
  let started = false;

  const post = (w: Worker, m: ClusterMessage): void => {
    const slot = slotOf.get(w);
    if (slot?.outbox !== undefined) slot.outbox.push(m);
    // A worker that went away meanwhile: its exit is handled where it exits, not here.
    else if (w.isConnected()) w.send(m, undefined, () => undefined);
  };

  /** Asks a worker; rejects when it exits first or takes longer than `timeoutMs`. */
  const call = (w: Worker, topic: string, body: unknown, timeoutMs: number): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextCall++;
      const timer = setTimeout(() => {
        calls.delete(id);
        reject(new Error(`worker ${w.process.pid} did not answer ${topic} in ${timeoutMs} ms`));
      }, timeoutMs);
      calls.set(id, {
        worker: w,
        resolve: (b) => {
          clearTimeout(timer);
          resolve(b);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      post(w, { sy: 1, t: 'call', id, topic, body });
    });

  const others = (from: Worker): Slot[] =>
    [...slots.values()].filter((s) => s.worker !== from && s.worker.isConnected());

  const relay = async (
    from: Worker,
    topic: string,
    body: unknown,
    retain: boolean,
    required: boolean,
  ): Promise<void> => {
    const relayed = retained.begin(topic, body, retain);
    try {
      await Promise.all(
        others(from).map(async (s) => {
          const w = s.worker;
          // A worker still opening applies it before its first request (its calls wait for it);
          // one whose link is not up yet is handed the retained state when it is (and what is not
          // retained waits in its outbox).
          if (!s.up) {
            if (s.outbox === undefined || !retain)
              post(w, { sy: 1, t: 'call', id: 0, topic, body });
            return;
          }
          try {
            await call(w, topic, body, applyTimeoutMs);
          } catch (err) {
            if (!w.isConnected() || w.isDead()) return; // gone: its replacement starts afresh
            if (!required) return; // a request to flush or the like: not waited for longer
            // A worker that cannot apply a consent change, an override or a feature value must not
            // serve on without it: it is restarted, and its replacement starts from the retained
            // override and copies the consent records and feature values from a worker that is up
            // (or loads them from their shared store).
            o.say(
              `switchyard: worker ${s.id} (pid ${w.process.pid}) did not apply ${topic}: ${String(err)}; restarting it`,
            );
            w.process.kill('SIGKILL');
          }
        }),
      );
    } finally {
      relayed();
    }
  };

  /**
   * A worker's question for one other worker that is up: the lowest-numbered one, so the questions
   * of one exchange (a starting worker's copy of the feature values, chunk by chunk) go to the same
   * worker while it lives. Undefined when there is none.
   */
  const askPeer = async (from: Worker, topic: string, body: unknown): Promise<unknown> => {
    const peer = [...slots.values()]
      .filter((s) => s.up && s.worker !== from && s.worker.isConnected())
      .sort((a, b) => a.id - b.id)[0];
    return peer === undefined ? undefined : call(peer.worker, topic, body, applyTimeoutMs);
  };

  /** A question of a worker that the primary answers from every worker (the metrics). */
  const question = async (topic: string): Promise<unknown> => {
    if (topic === METRICS_TOPIC) {
      const live = [...slots.values()].filter((s) => s.up && s.worker.isConnected());
      const parts = await Promise.all(
        live.map((s) => call(s.worker, METRICS_COLLECT_TOPIC, null, 2_000).catch(() => undefined)),
      );
      return aggregateMetrics(
        parts.filter((p): p is object => typeof p === 'object' && p !== null),
      );
    }
    throw new Error(`unknown topic ${topic}`);
  };

  const onMessage = (slot: Slot, w: Worker, m: unknown): void => {
    if (!isClusterMessage(m)) return;
    switch (m.t) {
      case 'reply': {
        const c = calls.get(m.id);
        if (c === undefined) return;
        calls.delete(m.id);
        if (m.error !== undefined) c.reject(new Error(m.error));
        else c.resolve(m.body);
        return;
      }
      case 'hello': {
        const waiting = slot.outbox ?? [];
        slot.outbox = undefined;
        // What a worker that starts now must know before it serves and cannot copy from another
        // worker (there may be none up): the last override.
        for (const [topic, body] of retained.replay())
          post(w, { sy: 1, t: 'call', id: 0, topic, body });
        for (const msg of waiting) post(w, msg);
        return;
      }
      case 'up':
        slot.up = true;
        return;
      case 'req':
        if (m.peer === true)
          return void askPeer(w, m.topic, m.body).then(
            (body) => post(w, { sy: 1, t: 'reply', id: m.id, body }),
            (err: unknown) => post(w, { sy: 1, t: 'reply', id: m.id, error: String(err) }),
          );
        // Limiter batches are answered synchronously, in the order the worker sent them.
        if (m.topic === LIMITER_TOPIC) {
          let body: unknown;
          try {
            body = runLimiterOps(limiter, m.body as LimiterOp[]);
          } catch (err) {
            return post(w, { sy: 1, t: 'reply', id: m.id, error: String(err) });
          }
          return post(w, { sy: 1, t: 'reply', id: m.id, body });
        }
        return void question(m.topic).then(
          (body) => post(w, { sy: 1, t: 'reply', id: m.id, body }),
          (err: unknown) => post(w, { sy: 1, t: 'reply', id: m.id, error: String(err) }),
        );
      case 'bcast':
        return void relay(
          w,
          m.topic,
          m.body,
          m.retain === true,
          m.retain === true || m.required === true,
        ).then(() => post(w, { sy: 1, t: 'reply', id: m.id }));
      case 'call':
        return;
    }
  };

  return new Promise<Primary>((resolveStart, rejectStart) => {
    let url: string | undefined;
    const listening = new Set<number>();

    const fork = (id: number, crashes: number): void => {
      const worker = cluster.fork({
        [WORKER_ID_ENV]: String(id),
        [WORKER_COUNT_ENV]: String(o.workers),
      });
      // Broadcasts being relayed as it forks did not count it in: it is handed them first.
      const outbox: ClusterMessage[] = retained.inFlight().map(([topic, body]) => ({
        sy: 1,
        t: 'call',
        id: 0,
        topic,
        body,
      }));
      const slot: Slot = { id, worker, startedAt: Date.now(), outbox, up: false, crashes };
      slots.set(id, slot);
      slotOf.set(worker, slot);
      worker.on('message', (m: unknown) => onMessage(slot, worker, m));
      worker.on('listening', (a: Address) => {
        if (url !== undefined) return;
        listening.add(id);
        if (listening.size < o.workers) return;
        const host = a.addressType === 6 ? `[${a.address}]` : (a.address ?? '127.0.0.1');
        url = `http://${host}:${a.port}`;
        started = true;
        resolveStart({ url, close, signal });
      });
      worker.on('exit', (code, signal) => {
        for (const [cid, c] of calls)
          if (c.worker === worker) {
            calls.delete(cid);
            c.reject(new Error('the worker exited'));
          }
        if (slots.get(id)?.worker === worker) slots.delete(id);
        if (stopping) return;
        const why = signal ?? `code ${code}`;
        if (!started) {
          stopping = true;
          for (const s of slots.values()) s.worker.process.kill('SIGKILL');
          rejectStart(new Error(`worker ${id} exited (${why}) before it was listening`));
          return;
        }
        const lived = Date.now() - slot.startedAt;
        const n = lived >= STABLE_MS ? 0 : crashes + 1;
        const delay = n === 0 ? 0 : Math.min(MAX_BACKOFF_MS, BACKOFF_MS * 2 ** (n - 1));
        o.say(
          `switchyard: worker ${id} (pid ${worker.process.pid}) exited (${why}); restarting it in ${delay} ms`,
        );
        setTimeout(() => {
          if (!stopping) fork(id, n);
        }, delay).unref();
      });
    };

    const signal = (sig: NodeJS.Signals): void => {
      for (const s of slots.values()) if (!s.worker.isDead()) s.worker.process.kill(sig);
    };
    let closing: Promise<void> | undefined;
    const close = (): Promise<void> => {
      closing ??= (async () => {
        stopping = true;
        const live = [...slots.values()].map((s) => s.worker);
        const exited = live.map(
          (w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r()))),
        );
        // Each worker drains as a single process does on SIGTERM: /readyz turns 503, requests in
        // flight finish (up to drain_ms), then it exits.
        for (const w of live) if (!w.isDead()) w.process.kill('SIGTERM');
        const killer = setTimeout(() => {
          for (const w of live) if (!w.isDead()) w.process.kill('SIGKILL');
        }, o.drainMs + 5_000);
        await Promise.all(exited);
        clearTimeout(killer);
        await limiter.close();
      })();
      return closing;
    };

    for (let id = 1; id <= o.workers; id++) fork(id, 0);
  });
}
