import type { VectorHit } from '../contracts/vector-index.js';

/** Nearest first; equal distances by id, then tenant, so merges are deterministic. */
export function compareHits(a: VectorHit, b: VectorHit): number {
  if (a.distance !== b.distance) return a.distance - b.distance;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return a.meta.tenant < b.meta.tenant ? -1 : a.meta.tenant > b.meta.tenant ? 1 : 0;
}

/**
 * Merges per-shard top-k lists into the global top-k. Correct because each shard returns its own
 * k nearest (after filtering): the global k nearest are among the union. A vector present in two
 * shards (mid-rebalance, both copies live) appears once, with its nearer distance.
 */
export function mergeTopK(lists: readonly (readonly VectorHit[])[], k: number): VectorHit[] {
  if (lists.length === 1) return lists[0]!.slice(0, k);
  const best = new Map<string, VectorHit>();
  for (const list of lists) {
    for (const hit of list) {
      const key = `${hit.meta.tenant}\u0000${hit.id}`;
      const seen = best.get(key);
      if (seen === undefined || compareHits(hit, seen) < 0) best.set(key, hit);
    }
  }
  return [...best.values()].sort(compareHits).slice(0, k);
}

/**
 * Keeps the k smallest (distance, slot) pairs seen: a bounded max-heap, O(n log k) over a scan.
 */
export class TopK {
  readonly slots: number[] = [];
  readonly dists: number[] = [];

  constructor(private readonly k: number) {}

  get size(): number {
    return this.slots.length;
  }

  /** The distance a candidate must beat once full (Infinity until then). */
  worst(): number {
    return this.slots.length < this.k ? Infinity : this.dists[0]!;
  }

  push(slot: number, dist: number): void {
    const { slots, dists } = this;
    if (slots.length < this.k) {
      slots.push(slot);
      dists.push(dist);
      let i = slots.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (dists[p]! >= dists[i]!) break;
        this.swap(i, p);
        i = p;
      }
      return;
    }
    if (dist >= dists[0]!) return;
    slots[0] = slot;
    dists[0] = dist;
    const n = slots.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && dists[l]! > dists[m]!) m = l;
      if (r < n && dists[r]! > dists[m]!) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }

  /** Ascending by distance. */
  sorted(): { slot: number; dist: number }[] {
    return this.slots
      .map((slot, i) => ({ slot, dist: this.dists[i]! }))
      .sort((a, b) => a.dist - b.dist || a.slot - b.slot);
  }

  private swap(i: number, j: number): void {
    const s = this.slots[i]!;
    this.slots[i] = this.slots[j]!;
    this.slots[j] = s;
    const d = this.dists[i]!;
    this.dists[i] = this.dists[j]!;
    this.dists[j] = d;
  }
}
