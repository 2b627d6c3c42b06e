import type { CostKey } from '../contracts/cost-ledger.js';
import type { Attribution } from './cost-recorder.js';

/**
 * The last `capacity` ended requests: request id → cost key and end time, the oldest forgotten
 * first. `/v1/feedback` on a request finds its ledger row here without a store read.
 *
 * It is held for as long as feedback may come, 100,000 requests by default, so it is the
 * ledger's largest memory, and it grows with traffic until full. So it holds no object per
 * request: a ring of slots in typed arrays (the id's 64-bit hash, the end time) and one array of
 * row keys (the batch rows' own objects, shared by every request of a row), indexed by an
 * open-addressing table of slot numbers. About 34 bytes per request, none of it objects the
 * garbage collector walks; a `Map` from id strings took ~110 (the id's string 56, its entry and
 * the value beside), and a `Map` of `{ key, at }` objects ~170.
 *
 * Two ids with the same 64-bit hash would share an entry: with random UUIDs, about one chance
 * in 10^14 per lookup when full. The hash is seeded per process, and a match still needs the
 * caller's tenant to own the row (`CostRecorder.attribution`).
 */
export class RecentAttributions {
  /** Two 32-bit hashes of each slot's id. */
  private readonly hashes: Uint32Array;
  private readonly ends: Float64Array;
  private readonly keys: CostKey[] = [];
  /** Slot + 1 of the id hashed to each position (linear probing); 0 is empty. */
  private readonly table: Int32Array;
  private readonly mask: number;
  private readonly seed = (Math.random() * 0x1_0000_0000) >>> 0;
  /** The slot the next id takes: the oldest one's, once full. */
  private next = 0;
  private count = 0;

  constructor(private readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError('RecentAttributions: capacity must be a positive integer');
    this.hashes = new Uint32Array(capacity * 2);
    this.ends = new Float64Array(capacity);
    let size = 8;
    while (size < capacity * 2) size *= 2; // at most half full
    this.table = new Int32Array(size);
    this.mask = size - 1;
  }

  get size(): number {
    return this.count;
  }

  add(requestId: string, key: CostKey, at: number): void {
    const a = this.hashA(requestId);
    const b = this.hashB(requestId);
    const had = this.find(a, b);
    if (had >= 0) {
      // The same id again (a client's own x-request-id): the latest request is the one kept.
      this.keys[had] = key;
      this.ends[had] = at;
      return;
    }
    const slot = this.next;
    if (this.count === this.capacity) this.unlink(slot);
    else this.count++;
    this.next = slot + 1 === this.capacity ? 0 : slot + 1;
    this.hashes[slot * 2] = a;
    this.hashes[slot * 2 + 1] = b;
    this.ends[slot] = at;
    this.keys[slot] = key;
    let i = a & this.mask;
    while (this.table[i] !== 0) i = (i + 1) & this.mask;
    this.table[i] = slot + 1;
  }

  get(requestId: string): Attribution | undefined {
    const slot = this.find(this.hashA(requestId), this.hashB(requestId));
    return slot < 0 ? undefined : { key: this.keys[slot]!, at: this.ends[slot]! };
  }

  private find(a: number, b: number): number {
    for (let i = a & this.mask; ; i = (i + 1) & this.mask) {
      const s = this.table[i]! - 1;
      if (s < 0) return -1;
      if (this.hashes[s * 2] === a && this.hashes[s * 2 + 1] === b) return s;
    }
  }

  /** Takes `slot` out of the table, shifting later entries of its probe run back. */
  private unlink(slot: number): void {
    const { table, mask, hashes } = this;
    let i = hashes[slot * 2]! & mask;
    while (table[i] !== slot + 1) i = (i + 1) & mask;
    for (let j = (i + 1) & mask; table[j] !== 0; j = (j + 1) & mask) {
      const home = hashes[(table[j]! - 1) * 2]! & mask;
      // An entry whose home lies cyclically in (i, j] is still reachable: it stays.
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      table[i] = table[j]!;
      i = j;
    }
    table[i] = 0;
  }

  /** FNV-1a over the UTF-16 code units, seeded. */
  private hashA(s: string): number {
    let h = (0x811c9dc5 ^ this.seed) >>> 0;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    return h >>> 0;
  }

  /** A multiply-xorshift hash (MurmurHash2's mixing step) with a final avalanche, seeded. */
  private hashB(s: string): number {
    let h = (this.seed ^ s.length ^ 0x9e3779b9) >>> 0;
    for (let i = 0; i < s.length; i++) {
      h = Math.imul(h ^ s.charCodeAt(i), 0x5bd1e995);
      h ^= h >>> 15;
    }
    h = Math.imul(h ^ (h >>> 13), 0x5bd1e995);
    return (h ^ (h >>> 15)) >>> 0;
  }
}
