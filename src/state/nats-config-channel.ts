import { connect, type KV, type NatsConnection } from 'nats';
import type {
  ConfigChannel,
  ConfigChannelHandlers,
  PublishedConfig,
} from '../contracts/config-channel.js';
import type { Logger } from '../contracts/logger.js';
import { parseJsonObject } from '../core/safe-json.js';

/** The JetStream key-value bucket every group's config lives in. */
export const CONFIG_BUCKET = 'switchyard-config';

export interface NatsConfigChannelOptions {
  readonly url: string;
  readonly group: string;
  /** The connection's name on the NATS server (the replica). */
  readonly name: string;
  readonly logger: Logger;
  /** Longest pause between connection attempts (ms). */
  readonly retryMaxMs?: number;
}

/**
 * A group's desired config in NATS JetStream key-value (#17). Chosen over PostgreSQL
 * LISTEN/NOTIFY: the bucket keeps the last value, so a replica that starts, or comes back after
 * a partition, reads the current desired config instead of missing a notification (NOTIFY is
 * fire-and-forget, and its payload stops at 8000 bytes, less than a real config); and the edge
 * tier needs no database to take part.
 *
 * Keys: `<group>.desired` (the config) and `<group>.published.<digest>` (every digest ever
 * published, so a starting replica can tell a new file from an old one). The channel connects in
 * the background and starts over on any connection loss: each reconnection re-reads the desired
 * config, so nothing published while away is missed.
 */
export class NatsConfigChannel implements ConfigChannel {
  private nc: NatsConnection | undefined;
  private kv: KV | undefined;
  private closed = false;
  private loop: Promise<void> | undefined;
  private readonly desiredKey: string;

  constructor(private readonly o: NatsConfigChannelOptions) {
    this.desiredKey = `${o.group}.desired`;
  }

  get connected(): boolean {
    return this.kv !== undefined && this.nc !== undefined && !this.nc.isClosed();
  }

  start(handlers: ConfigChannelHandlers): void {
    this.loop ??= this.run(handlers);
  }

  async publish(c: PublishedConfig): Promise<void> {
    const kv = this.kv;
    if (kv === undefined || !this.connected) throw new Error('not connected to NATS');
    await kv.put(`${this.o.group}.published.${c.digest}`, new Uint8Array([1]));
    await kv.put(this.desiredKey, Buffer.from(JSON.stringify(c)));
  }

  async published(digest: string): Promise<boolean> {
    const kv = this.kv;
    if (kv === undefined) throw new Error('not connected to NATS');
    const e = await kv.get(`${this.o.group}.published.${digest}`);
    return e !== null && e.operation === 'PUT';
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.nc?.close().catch(() => undefined);
    await this.loop;
  }

  private async run(h: ConfigChannelHandlers): Promise<void> {
    let wait = 100;
    while (!this.closed) {
      let nc: NatsConnection | undefined;
      try {
        nc = await connect({
          servers: this.o.url,
          name: this.o.name,
          // One connection per attempt: a fresh watch after each loss re-reads the desired value.
          reconnect: false,
          timeout: 2_000,
        });
        this.nc = nc;
        if (this.closed) break;
        this.kv = await nc.jetstream().views.kv(CONFIG_BUCKET, { history: 1 });
        wait = 100;
        this.o.logger.info({ url: this.o.url, group: this.o.group }, 'config sync connected');
        await h.connected();
        const watch = await this.kv.watch({ key: this.desiredKey });
        const consume = (async () => {
          for await (const e of watch) {
            if (e.operation !== 'PUT') continue;
            const c = decode(e.value);
            if (c === undefined)
              this.o.logger.warn({ key: e.key }, 'config sync: unreadable entry');
            else h.desired(c);
          }
        })();
        await Promise.race([consume, nc.closed()]);
        watch.stop();
      } catch (err) {
        if (!this.closed)
          this.o.logger.warn(
            { url: this.o.url, err: err instanceof Error ? err.message : String(err) },
            'config sync: NATS unreachable; serving the current config, retrying',
          );
      }
      this.kv = undefined;
      await nc?.close().catch(() => undefined);
      if (this.closed) break;
      await new Promise((r) => setTimeout(r, wait).unref());
      wait = Math.min(wait * 2, this.o.retryMaxMs ?? 2_000);
    }
  }
}

function decode(value: Uint8Array): PublishedConfig | undefined {
  try {
    const o = parseJsonObject(Buffer.from(value).toString('utf8'));
    const { digest, text, origin, at } = o;
    if (typeof digest !== 'string' || typeof text !== 'string') return undefined;
    if (typeof origin !== 'string' || typeof at !== 'number') return undefined;
    return { digest, text, origin, at };
  } catch {
    return undefined;
  }
}
