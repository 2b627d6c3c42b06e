import { randomFillSync } from 'node:crypto';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Random bytes for 256 ids at a time (as Node's own `randomUUID` caches them). */
const pool = Buffer.alloc(16 * 256);
let used = pool.length;
/** The id being written, in ASCII. */
const text = Buffer.alloc(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');

/**
 * A new request id (a random UUID, version 4), or the client's own `x-request-id` when it is
 * short and plain.
 *
 * The id is written into a buffer and read out as one flat string. `crypto.randomUUID()` builds
 * its string by concatenating the pieces, which leaves a tree of ~20 string parts: ~520 bytes of
 * heap for 36 characters, kept for as long as the id is (in the request's records and log lines
 * until they are written), and a slice of it, which flattens it, still keeps a 32-byte slice
 * beside the flat string. `src/core/ids.test.ts` measures what an id holds.
 */
export function requestId(fromClient?: string | string[]): string {
  if (typeof fromClient === 'string' && CLIENT_ID.test(fromClient)) return fromClient;
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  let at = 0;
  for (let i = 0; i < 16; i++) {
    let b = pool[used + i]!;
    if (i === 6)
      b = (b & 0x0f) | 0x40; // version 4
    else if (i === 8) b = (b & 0x3f) | 0x80; // variant 10
    text[at++] = HEX[b >> 4]!;
    text[at++] = HEX[b & 15]!;
    if (i === 3 || i === 5 || i === 7 || i === 9) text[at++] = 0x2d; // '-'
  }
  used += 16;
  return text.toString('latin1', 0, 36);
}
