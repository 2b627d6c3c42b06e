import { RetainedBroadcasts } from '../../src/cluster/retained-broadcasts.js';
import type { ClusterPeer } from '../../src/contracts/cluster.js';

/** One worker of an in-process cluster: its peer, and whether it applies broadcasts now. */
export interface BusWorker {
  readonly peer: ClusterPeer;
  /** While false, what is broadcast to it waits (as a starting worker's queue does). */
  up: boolean;
}

/**
 * The workers of `serve --workers N` in one process, with the primary's relay rules
 * (src/cluster/primary.ts): a broadcast goes to every other worker and resolves once each that is
 * up applied it (one not up applies it when it comes up, in order; one that joins while it is
 * relayed gets it first), and is kept in `retained` as the primary keeps it; `askPeer` asks the lowest-numbered other worker that is up. Every hand-over waits a turn, as IPC does. Real
 * processes: test/reliability/workers-features.test.ts.
 */
export class ClusterBus {
  /** What the primary would keep for workers that start later. */
  readonly retained = new RetainedBroadcasts();
  private readonly workers: {
    w: BusWorker;
    handlers: Map<string, (body: unknown) => unknown>;
    queue: [string, unknown][];
  }[] = [];

  /** Adds worker number `length + 1`; it is up unless `up` is false (then call `start`). */
  join(up = true): BusWorker {
    const id = this.workers.length + 1;
    const handlers = new Map<string, (body: unknown) => unknown>();
    const turn = () => new Promise((r) => setImmediate(r));
    const copy = (body: unknown): unknown =>
      body === undefined ? undefined : JSON.parse(JSON.stringify(body));
    // Joining while broadcasts are relayed: handed them first, as the primary does at a fork.
    const queue = this.retained.inFlight().map(([t, b]): [string, unknown] => [t, copy(b)]);
    const w: BusWorker = {
      up,
      peer: {
        id,
        workers: 0,
        request: () => Promise.reject(new Error('no primary questions on the bus')),
        broadcast: async (topic, body, options) => {
          const relayed = this.retained.begin(topic, body, options?.retain === true);
          // The workers on the bus now; one that joins later is handed it as in flight.
          const targets = this.workers.filter((o) => o.w !== w);
          try {
            await turn();
            await Promise.all(
              targets
                .filter((o) => this.workers.includes(o))
                .map(async (o) => {
                  if (!o.w.up) o.queue.push([topic, copy(body)]);
                  else await o.handlers.get(topic)?.(copy(body));
                }),
            );
          } finally {
            relayed();
          }
        },
        askPeer: async (topic, body) => {
          await turn();
          const other = this.workers.find((o) => o.w !== w && o.w.up);
          return copy(await other?.handlers.get(topic)?.(copy(body)));
        },
        on: (topic, handler) => {
          handlers.set(topic, handler);
        },
      },
    };
    this.workers.push({ w, handlers, queue });
    return w;
  }

  /** Applies what waited for `w`, in order, and marks it up (`WorkerLink.start`). */
  async start(w: BusWorker): Promise<void> {
    const entry = this.workers.find((o) => o.w === w)!;
    for (const [topic, body] of entry.queue.splice(0)) await entry.handlers.get(topic)?.(body);
    w.up = true;
  }

  /** Takes `w` off the bus, as a worker that died (nothing more reaches it or is asked of it). */
  leave(w: BusWorker): void {
    const i = this.workers.findIndex((o) => o.w === w);
    if (i >= 0) this.workers.splice(i, 1);
  }
}
