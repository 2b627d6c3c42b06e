/** How a broadcast is kept and enforced. */
export interface BroadcastOptions {
  /**
   * The primary keeps the last body of the topic (one per topic, so what it keeps is bounded) and
   * hands it to workers that start later, before they serve: for state that is one value, such as
   * the mode override. State with one value per user or key is copied from a worker that is up
   * (`askPeer`) or loaded from a shared store instead. A retained broadcast is `required`.
   */
  readonly retain?: boolean;
  /**
   * A worker that does not apply it (an error, or no answer in time) is restarted rather than
   * serving on without it. Otherwise it is not waited for past the timeout.
   */
  readonly required?: boolean;
}

/**
 * This process's link to the other worker processes of one `switchyard serve --workers N` (#17).
 * The primary process holds what every worker must agree on (the embedded quota counters, the
 * last mode override) and relays between workers (consent changes, feature values); a worker
 * never counts or decides alone what the group must decide together.
 */
export interface ClusterPeer {
  /** This worker's number, 1..`workers` (a restarted worker takes the number of the one it replaces). */
  readonly id: number;
  /** How many worker processes serve (N). */
  readonly workers: number;
  /** Asks the primary; resolves with its answer, rejects when it answers an error or goes away. */
  request(topic: string, body: unknown): Promise<unknown>;
  /**
   * Hands `body` to the `on(topic)` handler of every other worker and resolves once each has
   * applied it (a worker that dies meanwhile is not waited for).
   */
  broadcast(topic: string, body: unknown, options?: BroadcastOptions): Promise<void>;
  /**
   * Asks the `on(topic)` handler of one other worker that is up (the same one each time while it
   * lives); resolves with its answer, or `undefined` when no other worker is up.
   */
  askPeer(topic: string, body: unknown): Promise<unknown>;
  /** Handles a broadcast or a question of the primary; what it returns (or resolves) is the answer. */
  on(topic: string, handler: (body: unknown) => unknown): void;
}
