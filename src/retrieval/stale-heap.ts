/**
 * Slots ordered by last update, stalest first, for size-cap eviction. Entries go stale when a
 * slot is rewritten or removed; each carries the slot's generation and is skipped lazily.
 */
export class StaleHeap {
  private readonly at: number[] = [];
  private readonly slot: number[] = [];
  private readonly gen: number[] = [];

  get length(): number {
    return this.at.length;
  }

  push(updatedAt: number, slot: number, gen: number): void {
    this.at.push(updatedAt);
    this.slot.push(slot);
    this.gen.push(gen);
    let i = this.at.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.at[p]! <= this.at[i]!) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes and returns the stalest entry, or undefined when empty. */
  pop(): { slot: number; gen: number } | undefined {
    const n = this.at.length;
    if (n === 0) return undefined;
    const top = { slot: this.slot[0]!, gen: this.gen[0]! };
    this.swap(0, n - 1);
    this.at.pop();
    this.slot.pop();
    this.gen.pop();
    const m = this.at.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let s = i;
      if (l < m && this.at[l]! < this.at[s]!) s = l;
      if (r < m && this.at[r]! < this.at[s]!) s = r;
      if (s === i) break;
      this.swap(i, s);
      i = s;
    }
    return top;
  }

  private swap(i: number, j: number): void {
    for (const a of [this.at, this.slot, this.gen]) {
      const t = a[i]!;
      a[i] = a[j]!;
      a[j] = t;
    }
  }
}
