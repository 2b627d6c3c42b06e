import { randomFillSync } from 'node:crypto';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Random bytes for 256 ids at a time (as Node's own `randomUUID` caches them). */
const pool = Buffer.alloc(16 * 256);
let used = pool.length;
/** The id being written, in ASCII. */
const text = Buffer.alloc(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');

/** The offset of `n` fresh random bytes in `pool`. */
function random(n: number): number {
  if (used + n > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const at = used;
  used += n;
  return at;
}

/** Writes byte `b` as two hex digits at `at` in `text`; returns the next offset. */
function hex(b: number, at: number): number {
  text[at] = HEX[b >> 4]!;
  text[at + 1] = HEX[b & 15]!;
  return at + 2;
}

/** The time and counter of the last id made (RFC 9562 §6.2, method 1: a 12-bit counter). */
let lastMs = 0;
let counter = 0;

/**
 * A new request id (a UUID, version 7), or the client's own `x-request-id` when it is short and
 * plain.
 *
 * Version 7: the first 48 bits are the Unix time in milliseconds, then a 12-bit counter (started
 * at a random value below 2048 each millisecond, so ids of one process sort in the order they
 * were made, and a millisecond holds at least 2048 of them before the time part moves on), then
 * 62 random bits. Ids that grow with time are what the inference log's indexes (#15) need: a
 * random id lands on a random page of its B-tree, so every insert dirtied a page of its own, which
 * is written to the WAL at commit and again at checkpoint, and the log's writer cost grew with the
 * file (18 µs per request on an empty file, 51 at 500,000 requests; 17 either way with v7 ids).
 * They also sort by time, for whoever reads them.
 *
 * The id is written into a buffer and read out as one flat string. `crypto.randomUUID()` builds
 * its string by concatenating the pieces, which leaves a tree of ~20 string parts: ~520 bytes of
 * heap for 36 characters, kept for as long as the id is (in the request's records and log lines
 * until they are written), and a slice of it, which flattens it, still keeps a 32-byte slice
 * beside the flat string. `src/core/ids.test.ts` measures what an id holds.
 */
export function requestId(fromClient?: string | string[]): string {
  if (typeof fromClient === 'string' && CLIENT_ID.test(fromClient)) return fromClient;
  const r = random(10);
  const now = Date.now();
  if (now > lastMs) {
    lastMs = now;
    counter = ((pool[r]! << 8) | pool[r + 1]!) & 0x7ff;
  } else if (++counter > 0xfff) {
    // 4,096 ids in one millisecond (or the clock went back): borrow the next millisecond.
    lastMs++;
    counter = 0;
  }
  const hi = Math.floor(lastMs / 0x10000);
  let at = hex(hi >>> 24, 0);
  at = hex((hi >>> 16) & 0xff, at);
  at = hex((hi >>> 8) & 0xff, at);
  at = hex(hi & 0xff, at);
  text[at++] = 0x2d;
  at = hex((lastMs >>> 8) & 0xff, at);
  at = hex(lastMs & 0xff, at);
  text[at++] = 0x2d;
  at = hex(0x70 | (counter >> 8), at); // version 7
  at = hex(counter & 0xff, at);
  text[at++] = 0x2d;
  at = hex((pool[r + 2]! & 0x3f) | 0x80, at); // variant 10
  at = hex(pool[r + 3]!, at);
  text[at++] = 0x2d;
  for (let i = 4; i < 10; i++) at = hex(pool[r + i]!, at);
  return text.toString('latin1', 0, 36);
}

/**
 * A new W3C trace id (32 hex digits): the Unix time in seconds, then 96 random bits (the shape
 * AWS X-Ray gives its trace ids). The inference log indexes trace ids, and a trace id that grows
 * with time keeps that index's inserts on its last pages, as `requestId` does for request ids.
 * Head sampling stays fair: OpenTelemetry's ratio sampler XORs all four 32-bit words.
 */
export function traceId(): string {
  const r = random(12);
  const s = Math.floor(Date.now() / 1000);
  let at = hex(s >>> 24, 0);
  at = hex((s >>> 16) & 0xff, at);
  at = hex((s >>> 8) & 0xff, at);
  at = hex(s & 0xff, at);
  for (let i = 0; i < 12; i++) at = hex(pool[r + i]!, at);
  return text.toString('latin1', 0, 32);
}
