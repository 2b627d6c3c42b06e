import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the old generation grow past the live heap before its next full GC, in
 * percent; 0 restores V8's own rule. V8 picks a factor of up to 4x on a large machine, so a
 * gateway whose live heap is ~22 MB carried up to ~70 MB of dead objects under load (requests
 * that waited in an admission queue survive two young-generation GCs and die old). At 20 the
 * old generation stays within 20% of the live heap; under bench:overhead's load that meant ~11
 * full GCs per 12 s instead of ~4, at 5-9 ms each: under 1% of a core (--trace-gc-nvp).
 *
 * V8 reads this flag at every full GC, so setting it after start takes effect (checked on
 * this Node by test/integration/heap-growing.test.ts). It is process-wide: `switchyard serve`
 * applies `server.heap_growing_percent` at start; a gateway embedded in another program leaves
 * its host's V8 settings alone.
 */
export function applyHeapGrowingPercent(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0) throw new RangeError(`bad percent ${percent}`);
  setFlagsFromString(`--heap-growing-percent=${percent}`);
}
