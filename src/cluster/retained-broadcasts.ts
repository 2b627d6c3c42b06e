/**
 * The broadcasts the primary of `serve --workers N` keeps for workers that start later (#17): the
 * last body of each retained topic, so it holds at most one entry per topic, whatever traffic
 * goes through it (today one: the mode override). Consent records and feature values are not kept
 * here; a starting worker loads them from their store or copies them from a worker that is up.
 */
export class RetainedBroadcasts {
  private readonly last = new Map<string, unknown>();

  /** Notes a broadcast: kept when `retain`, replacing the topic's previous one. */
  keep(topic: string, body: unknown, retain: boolean): void {
    if (retain) this.last.set(topic, body);
  }

  /** What a starting worker is handed before it serves, in the order the topics first came. */
  replay(): [topic: string, body: unknown][] {
    return [...this.last];
  }

  get size(): number {
    return this.last.size;
  }
}
