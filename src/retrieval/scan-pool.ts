import type { Worker } from 'node:worker_threads';
import { syError } from '../core/errors.js';
import type { ScanRequest, ScanResponse } from './scan-worker.js';
import { startWorker } from '../core/worker-script.js';
import { extend } from '../core/objects.js';

interface Pending {
  resolve(results: ScanResponse['results']): void;
  reject(err: unknown): void;
}

/**
 * Worker threads for heavy exact scans (a wide filter that leaves too many candidates for the
 * event loop, recall probes). Rows are read from the shard's shared slab: only the candidate list
 * and the query cross the thread boundary. Round-robin; each worker runs its queue in order.
 */
export class ScanPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private seq = 0;
  private closed = false;

  constructor(size: number) {
    for (let i = 0; i < Math.max(1, size); i++) {
      const worker = startWorker(import.meta.url, 'scan-worker');
      worker.unref();
      worker.on('message', (msg: ScanResponse) => {
        const p = this.pending.get(msg.id);
        if (p === undefined) return;
        this.pending.delete(msg.id);
        if (msg.error !== undefined) p.reject(syError('SY_ERR_INTERNAL', msg.error));
        else p.resolve(msg.results);
      });
      worker.on('error', (err) => {
        for (const [id, p] of this.pending) {
          this.pending.delete(id);
          p.reject(err);
        }
      });
      this.workers.push(worker);
    }
  }

  scan(req: Omit<ScanRequest, 'id'>): Promise<ScanResponse['results']> {
    if (this.closed) return Promise.reject(syError('SY_ERR_NOT_READY', 'scan pool closed'));
    const id = ++this.seq;
    const worker = this.workers[this.next++ % this.workers.length]!;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage(extend(req, { id }) satisfies ScanRequest);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.pending.values())
      p.reject(syError('SY_ERR_NOT_READY', 'scan pool closed'));
    this.pending.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
