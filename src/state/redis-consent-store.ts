import type { Redis } from 'ioredis';
import { openRedis, openRedisSubscriber, redisReady } from './redis.js';
import type { Logger } from '../contracts/logger.js';
import type { ConsentPersistence, ConsentRecord } from '../contracts/policy.js';
import { syError } from '../core/errors.js';

export interface RedisConsentStoreOptions {
  readonly url: string;
  /** Prefix of every key and of the change channel (separate per deployment or test run). */
  readonly prefix: string;
  /** A command slower than this is an outage (TOOLCHAIN.md: the ioredis trap). */
  readonly commandTimeoutMs: number;
  readonly logger?: Logger;
}

/**
 * Consent records shared by the replicas of a scaled deployment: one JSON string per user
 * (`<prefix>c:<tenant>:<user>`), and every change published on `<prefix>consent` so that each
 * replica's in-memory copy (which every policy decision reads) follows at once. After a lost
 * subscription the replica reloads every record, so a missed revocation cannot linger.
 * Commands never queue or retry: with Redis away, a consent change fails with
 * `SY_ERR_CONSENT_UNAVAILABLE` and enforcement keeps the last known records.
 */
export class RedisConsentStore implements ConsentPersistence {
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly channel: string;

  constructor(private readonly options: RedisConsentStoreOptions) {
    const connection = {
      url: options.url,
      commandTimeoutMs: options.commandTimeoutMs,
      name: 'consent store',
      logger: options.logger,
    };
    this.redis = openRedis(connection);
    this.sub = openRedisSubscriber(connection);
    this.channel = `${options.prefix}consent`;
  }

  /** Resolves true once the command connection is up, false after `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean> {
    return redisReady(this.redis, timeoutMs);
  }

  async loadAll(): Promise<ConsentRecord[]> {
    const out: ConsentRecord[] = [];
    let cursor = '0';
    try {
      do {
        const [next, keys] = await this.redis.scan(
          cursor,
          'MATCH',
          `${this.options.prefix}c:*`,
          'COUNT',
          1_000,
        );
        cursor = next;
        if (keys.length === 0) continue;
        for (const raw of await this.redis.mget(...keys)) {
          const r = parse(raw);
          if (r !== undefined) out.push(r);
        }
      } while (cursor !== '0');
    } catch (err) {
      this.options.logger?.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'consent store: could not load the consent records from Redis; using the defaults until it answers',
      );
    }
    return out;
  }

  async save(record: ConsentRecord): Promise<void> {
    const json = JSON.stringify(record);
    try {
      const replies = await this.redis
        .multi()
        .set(`${this.options.prefix}c:${record.tenant}:${record.userId}`, json)
        .publish(this.channel, json)
        .exec();
      const failed =
        replies === null ? new Error('aborted') : replies.find((r) => r[0] !== null)?.[0];
      if (failed !== undefined && failed !== null) throw failed;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw syError('SY_ERR_CONSENT_UNAVAILABLE', message.slice(0, 200), { cause: err });
    }
  }

  subscribe(onRecord: (record: ConsentRecord) => void): Promise<void> {
    let first = true;
    this.sub.on('message', (_channel: string, message: string) => {
      const r = parse(message);
      if (r !== undefined) onRecord(r);
    });
    this.sub.on('ready', () => {
      if (first) {
        first = false;
        return;
      }
      // Reconnected: changes published meanwhile were missed.
      void this.loadAll().then((all) => all.forEach(onRecord));
    });
    const subscribed = this.sub.subscribe(this.channel).then(
      () => undefined,
      (err: unknown) => {
        this.options.logger?.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'consent store: could not subscribe to consent changes',
        );
      },
    );
    // Redis away at start: the subscription waits in the offline queue (a reconnect reloads
    // everything, above); loading goes ahead after the command timeout.
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.commandTimeoutMs);
      timer.unref();
    });
    return Promise.race([subscribed, gaveUp]).finally(() => clearTimeout(timer));
  }

  async close(): Promise<void> {
    for (const r of [this.sub, this.redis]) {
      // QUIT would wait in the subscriber's offline queue while Redis is away.
      if (r.status !== 'ready') {
        r.disconnect();
        continue;
      }
      try {
        await r.quit();
      } catch {
        r.disconnect();
      }
    }
  }
}

function parse(raw: string | null): ConsentRecord | undefined {
  if (raw === null) return undefined;
  try {
    const r = JSON.parse(raw) as ConsentRecord;
    return typeof r.tenant === 'string' &&
      typeof r.userId === 'string' &&
      typeof r.version === 'number'
      ? r
      : undefined;
  } catch {
    return undefined;
  }
}
