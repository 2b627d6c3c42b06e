/**
 * What the primary of `serve --workers N` hands a worker that starts, of the broadcasts (#17):
 *
 * - the last body of each retained topic, so it holds at most one entry per topic whatever
 *   traffic goes through it (today one: the mode override). Consent records and feature values
 *   are not kept here; a starting worker loads them from their store or copies them from a worker
 *   that is up;
 * - the broadcasts still being relayed: a worker forked meanwhile was not among those they went
 *   to, and may copy from a worker that has not applied them yet (or from the one that made the
 *   change, which holds it only once every other worker has). They are dropped once relayed.
 */
export class RetainedBroadcasts {
  private readonly last = new Map<string, unknown>();
  private readonly relaying = new Set<[topic: string, body: unknown]>();

  /**
   * Notes a broadcast as its relay begins (kept when `retain`, replacing the topic's previous
   * one); the function returned ends the relay.
   */
  begin(topic: string, body: unknown, retain: boolean): () => void {
    if (retain) {
      this.last.set(topic, body);
      // A worker forked meanwhile is handed it with `replay`, when its link says hello.
      return () => undefined;
    }
    const entry: [string, unknown] = [topic, body];
    this.relaying.add(entry);
    return () => this.relaying.delete(entry);
  }

  /** What a worker forked now is handed first: the broadcasts being relayed, in order. */
  inFlight(): [topic: string, body: unknown][] {
    return [...this.relaying];
  }

  /** What a starting worker is handed before it serves, in the order the topics first came. */
  replay(): [topic: string, body: unknown][] {
    return [...this.last];
  }

  /** Retained topics: at most one entry each. */
  get size(): number {
    return this.last.size;
  }
}
