import { appendFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ModelCallRecord, RequestRecord } from '../contracts/inference-log.js';
import type { Logger } from '../contracts/logger.js';

export interface JsonlExportOptions {
  readonly path: string;
  /** The file is rotated (`<path>.1`, `<path>.2`, ...) before a batch would take it past this. */
  readonly maxBytes: number;
  /** Rotated files kept; older ones are deleted. */
  readonly keep: number;
  readonly logger: Logger;
}

/**
 * The inference log's warehouse export (#15): every batch the store took, appended to a JSONL file
 * as one line per record (`{"kind":"request",...}` or `{"kind":"call",...}`), rotated by size.
 * Writes are asynchronous and serialized; a failed write is logged and skipped (the store has the
 * records).
 */
export class JsonlExport {
  private chain: Promise<void> = Promise.resolve();
  private size: number | undefined;

  constructor(private readonly o: JsonlExportOptions) {}

  write(requests: readonly RequestRecord[], calls: readonly ModelCallRecord[]): void {
    let text = '';
    for (const c of calls) text += `${JSON.stringify({ kind: 'call', ...c })}\n`;
    for (const r of requests) text += `${JSON.stringify({ kind: 'request', ...r })}\n`;
    if (text === '') return;
    this.chain = this.chain.then(() => this.append(text));
  }

  /** Resolves once every batch handed over so far is written. */
  flushed(): Promise<void> {
    return this.chain;
  }

  private async append(text: string): Promise<void> {
    const bytes = Buffer.byteLength(text);
    try {
      if (this.size === undefined) {
        await mkdir(dirname(this.o.path), { recursive: true });
        this.size = await stat(this.o.path).then(
          (s) => s.size,
          () => 0,
        );
      }
      if (this.size > 0 && this.size + bytes > this.o.maxBytes) await this.rotate();
      await appendFile(this.o.path, text);
      this.size += bytes;
    } catch (err) {
      this.size = undefined;
      this.o.logger.warn({ err, path: this.o.path }, 'inference log: the JSONL export failed');
    }
  }

  private async rotate(): Promise<void> {
    const p = this.o.path;
    await rm(`${p}.${this.o.keep}`, { force: true });
    for (let i = this.o.keep - 1; i >= 1; i--)
      await rename(`${p}.${i}`, `${p}.${i + 1}`).catch(() => undefined);
    await rename(p, `${p}.1`);
    this.size = 0;
  }
}
