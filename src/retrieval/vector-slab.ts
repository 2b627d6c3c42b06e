import { normOf } from './vector-math.js';

/**
 * Vectors of one shard in one growable block of shared memory, one row per slot, with each
 * row's norm beside it. Shared so worker threads can scan rows without copies; growing allocates
 * a new block (a worker holding the old one still reads a consistent, older copy).
 */
export class VectorSlab {
  data: Float32Array;
  norms: Float32Array;
  private capacity: number;

  constructor(
    readonly dims: number,
    initialCapacity = 1024,
  ) {
    this.capacity = Math.max(16, initialCapacity);
    this.data = new Float32Array(new SharedArrayBuffer(this.capacity * dims * 4));
    this.norms = new Float32Array(new SharedArrayBuffer(this.capacity * 4));
  }

  get rows(): number {
    return this.capacity;
  }

  ensure(slots: number): void {
    if (slots <= this.capacity) return;
    let next = this.capacity;
    while (next < slots) next *= 2;
    const data = new Float32Array(new SharedArrayBuffer(next * this.dims * 4));
    data.set(this.data);
    const norms = new Float32Array(new SharedArrayBuffer(next * 4));
    norms.set(this.norms);
    this.data = data;
    this.norms = norms;
    this.capacity = next;
  }

  set(slot: number, vector: Float32Array): void {
    this.ensure(slot + 1);
    this.data.set(vector, slot * this.dims);
    this.norms[slot] = normOf(vector);
  }

  /** A copy of one row (safe to hand to usearch, which ignores subarray offsets). */
  copy(slot: number): Float32Array {
    const start = slot * this.dims;
    return this.data.slice(start, start + this.dims);
  }

  /** Rows as one contiguous copy, in the given order (for batched usearch adds). */
  gather(slots: readonly number[]): Float32Array {
    const out = new Float32Array(slots.length * this.dims);
    slots.forEach((slot, i) => {
      const start = slot * this.dims;
      out.set(this.data.subarray(start, start + this.dims), i * this.dims);
    });
    return out;
  }
}
