/**
 * Server-sent events, split at event boundaries without buffering a whole stream: each chunk
 * yields at once every complete event it finishes; only a trailing partial event waits for the
 * next chunk. Used by every OpenAI-compatible upstream (one parser, not one per vendor).
 */
const LF2 = Buffer.from('\n\n');
const CRLF2 = Buffer.from('\r\n\r\n');

/** Index just past the last event boundary in `buf`, or -1. */
function lastBoundary(buf: Buffer): number {
  const lf = buf.lastIndexOf(LF2);
  const crlf = buf.lastIndexOf(CRLF2);
  return Math.max(lf < 0 ? -1 : lf + 2, crlf < 0 ? -1 : crlf + 4);
}

export class SseSplitter {
  private pending: Buffer | undefined;

  /** Complete events finished by this chunk (one Buffer, possibly several events), or undefined. */
  push(chunk: Buffer): Buffer | undefined {
    const buf = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    const end = lastBoundary(buf);
    if (end < 0) {
      this.pending = buf;
      return undefined;
    }
    this.pending = end < buf.length ? buf.subarray(end) : undefined;
    return end === buf.length ? buf : buf.subarray(0, end);
  }

  /** Bytes of an event never terminated by a blank line. */
  get remainder(): number {
    return this.pending?.length ?? 0;
  }
}

/** The `data:` payloads of the events in `block` (whole events only). */
export function eventData(block: Buffer): string[] {
  const out: string[] = [];
  for (const event of block.toString('utf8').split(/\r?\n\r?\n/)) {
    if (event === '') continue;
    let data: string | undefined;
    for (const line of event.split(/\r?\n/)) {
      if (line.startsWith('data:')) {
        const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
        data = data === undefined ? value : `${data}\n${value}`;
      }
    }
    if (data !== undefined) out.push(data);
  }
  return out;
}
