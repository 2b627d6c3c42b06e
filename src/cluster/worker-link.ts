import type { BroadcastOptions, ClusterPeer } from '../contracts/cluster.js';
import {
  isClusterMessage,
  WORKER_COUNT_ENV,
  WORKER_ID_ENV,
  type ClusterMessage,
} from './messages.js';

interface Pending {
  resolve(body: unknown): void;
  reject(err: Error): void;
}

/**
 * A worker's side of the cluster IPC channel (#17). Calls of the primary that arrive before
 * `start()` (the retained broadcasts a new worker is handed first, and any broadcast sent while it
 * opens) wait until every capability has registered its handler, and are applied in order.
 */
export class WorkerLink implements ClusterPeer {
  private readonly pending = new Map<number, Pending>();
  private readonly handlers = new Map<string, (body: unknown) => unknown>();
  private queued: ClusterMessage[] | undefined = [];
  private next = 1;
  private readonly onMessage = (m: unknown): void => {
    if (!isClusterMessage(m)) return;
    if (m.t === 'reply') {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.body);
    } else if (m.t === 'call') {
      if (this.queued !== undefined) this.queued.push(m);
      else void this.answer(m);
    }
  };
  private readonly onDisconnect = (): void => {
    for (const p of this.pending.values()) p.reject(new Error('the primary process is gone'));
    this.pending.clear();
  };

  constructor(
    readonly id: number,
    readonly workers: number,
  ) {
    process.on('message', this.onMessage);
    process.once('disconnect', this.onDisconnect);
    this.post({ sy: 1, t: 'hello' });
  }

  /** The link of a worker started by the primary (undefined in a process that is not one). */
  static fromEnv(): WorkerLink | undefined {
    const id = Number(process.env[WORKER_ID_ENV]);
    const workers = Number(process.env[WORKER_COUNT_ENV]);
    if (process.send === undefined || !(id >= 1) || !(workers >= 1)) return undefined;
    return new WorkerLink(id, workers);
  }

  request(topic: string, body: unknown): Promise<unknown> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.post({ sy: 1, t: 'req', id, topic, body }, id);
    });
  }

  askPeer(topic: string, body: unknown): Promise<unknown> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.post({ sy: 1, t: 'req', id, topic, body, peer: true }, id);
    });
  }

  async broadcast(topic: string, body: unknown, options: BroadcastOptions = {}): Promise<void> {
    const id = this.next++;
    const { retain, required } = options;
    await new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.post(
        {
          sy: 1,
          t: 'bcast',
          id,
          topic,
          body,
          ...(retain === true ? { retain } : {}),
          ...(required === true ? { required } : {}),
        },
        id,
      );
    });
  }

  on(topic: string, handler: (body: unknown) => unknown): void {
    this.handlers.set(topic, handler);
  }

  /** Applies what arrived while the gateway opened, then everything at once; tells the primary. */
  async start(): Promise<void> {
    const queued = this.queued ?? [];
    this.queued = undefined;
    for (const m of queued) if (m.t === 'call') await this.answer(m);
    this.post({ sy: 1, t: 'up' });
  }

  close(): void {
    process.off('message', this.onMessage);
    process.off('disconnect', this.onDisconnect);
  }

  private async answer(m: Extract<ClusterMessage, { t: 'call' }>): Promise<void> {
    const handler = this.handlers.get(m.topic);
    try {
      const body = handler === undefined ? undefined : await handler(m.body);
      this.post({ sy: 1, t: 'reply', id: m.id, body });
    } catch (err) {
      this.post({ sy: 1, t: 'reply', id: m.id, error: String(err) });
    }
  }

  private post(m: ClusterMessage, pendingId?: number): void {
    const fail = (err: Error | null): void => {
      if (err === null || pendingId === undefined) return;
      const p = this.pending.get(pendingId);
      this.pending.delete(pendingId);
      p?.reject(err);
    };
    if (process.send === undefined || !process.connected) {
      fail(new Error('the primary process is gone'));
      return;
    }
    process.send(m, undefined, {}, fail);
  }
}
