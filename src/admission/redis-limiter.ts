import { Redis } from 'ioredis';
import type {
  QuotaCharge,
  QuotaDecision,
  QuotaLimiter,
  QuotaReceipt,
  QuotaWindow,
} from '../contracts/limiter.js';
import type { Logger } from '../contracts/logger.js';
import type { Clock } from '../core/clock.js';
import { events, publish } from '../core/events.js';
import { MemoryLimiter } from './memory-limiter.js';
import { settleTtl, spanOf } from './quota-window.js';

/**
 * All-or-nothing check-and-take over N charges, atomic in Redis. KEYS: one per charge. ARGV: N,
 * now (epoch ms), then per charge (kind, limit, amount, ms per unit, burst, ttl ms). Kind 1 is a
 * rate (GCRA: the key holds "tat:per", the theoretical arrival time and ms per unit); kind 0 a
 * calendar counter. Returns {0} when taken, or {i, wait ms} for the first charge that does not fit.
 */
const RESERVE_LUA = `
local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local tats = {}
for i = 1, n do
  local b = 2 + (i - 1) * 6
  local kind = tonumber(ARGV[b + 1])
  local limit = tonumber(ARGV[b + 2])
  local amount = tonumber(ARGV[b + 3])
  if kind == 1 then
    local per = tonumber(ARGV[b + 4])
    local burst = tonumber(ARGV[b + 5])
    local tat = now
    local v = redis.call('GET', KEYS[i])
    if v then
      local t = tonumber(string.match(v, '^([^:]+)'))
      if t > tat then tat = t end
    end
    local nxt = tat + amount * per
    local over = nxt - now - burst * per
    if amount > burst then return {i, '-1'} end
    if over > 0.000001 then return {i, string.format('%.3f', over)} end
    tats[i] = nxt
  else
    local cur = math.max(0, tonumber(redis.call('GET', KEYS[i]) or '0'))
    if cur + amount > limit then return {i, '0'} end
  end
end
for i = 1, n do
  local b = 2 + (i - 1) * 6
  local kind = tonumber(ARGV[b + 1])
  local amount = tonumber(ARGV[b + 3])
  if amount ~= 0 then
    if kind == 1 then
      redis.call('SET', KEYS[i], string.format('%.3f:%s', tats[i], ARGV[b + 4]), 'PX',
        math.ceil(tats[i] - now) + 1000)
    else
      redis.call('INCRBY', KEYS[i], amount)
      redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[b + 6]))
    end
  end
end
return {0}
`;

/** Moves a rate's arrival time by `delta` units (never behind now), keeping its unit. */
const SETTLE_RATE_LUA = `
local now = tonumber(ARGV[1])
local per = tonumber(ARGV[3])
local tat = now
local v = redis.call('GET', KEYS[1])
if v then
  local t = tonumber(string.match(v, '^([^:]+)'))
  if t > tat then tat = t end
end
tat = math.max(now, tat + tonumber(ARGV[2]) * per)
redis.call('SET', KEYS[1], string.format('%.3f:%s', tat, ARGV[3]), 'PX', math.ceil(tat - now) + 1000)
return 1
`;

/** Adds a delta to a calendar bucket, keeping its expiry (or giving it one: a zero reserve made none). */
const SETTLE_COUNT_LUA = `
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
`;

type Reply = [number, string?];

interface QuotaCommands {
  syReserve(...args: (string | number)[]): Promise<Reply>;
  sySettleRate(key: string, now: number, delta: number, per: number): Promise<number>;
  sySettleCount(key: string, delta: number, ttlMs: number): Promise<number>;
}

export interface RedisLimiterOptions {
  readonly url: string;
  /** Prefix of every key (separate per deployment, or per test run). */
  readonly prefix: string;
  /** A command slower than this counts as an outage (TOOLCHAIN.md: the ioredis trap). */
  readonly commandTimeoutMs: number;
  /** How often to probe Redis while counting locally. */
  readonly probeMs: number;
  /** Share of each limit this replica enforces on its own while Redis is away. */
  readonly localShare: number;
  readonly clock: Clock;
  readonly logger: Logger;
}

/**
 * Quota counters shared across replicas in Redis, with a local fallback. ioredis is configured so
 * that no command ever waits for Redis: no offline queue, no retries, a short command timeout.
 * The first failure switches to the in-process limiter at once (with `localShare` of each limit);
 * a probe every `probeMs` switches back when Redis answers again. Both switches log a warning
 * and publish an event (a metric counts the decisions taken locally).
 */
export class RedisLimiter implements QuotaLimiter {
  private readonly redis: Redis & QuotaCommands;
  private readonly local: MemoryLimiter;
  private local_ = false;
  private probing: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: RedisLimiterOptions) {
    this.local = new MemoryLimiter(opts.clock, opts.localShare, false);
    const redis = new Redis(opts.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs,
      connectTimeout: Math.max(200, opts.commandTimeoutMs * 4),
      enableReadyCheck: false,
      retryStrategy: (times: number) => Math.min(50 * times, opts.probeMs),
      lazyConnect: false,
    });
    redis.defineCommand('syReserve', { lua: RESERVE_LUA });
    redis.defineCommand('sySettleRate', { numberOfKeys: 1, lua: SETTLE_RATE_LUA });
    redis.defineCommand('sySettleCount', { numberOfKeys: 1, lua: SETTLE_COUNT_LUA });
    redis.on('error', (err: Error) => {
      opts.logger.debug({ err: err.message }, 'quota limiter: redis connection error');
    });
    redis.on('close', () => this.fallBack('connection closed'));
    this.redis = redis as Redis & QuotaCommands;
  }

  /** Resolves once connected, or after `timeoutMs` (requests are counted locally until then). */
  async ready(timeoutMs: number): Promise<boolean> {
    if (this.redis.status === 'ready') return true;
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.redis.off('ready', onReady);
        resolve(ok);
      };
      const onReady = (): void => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.redis.once('ready', onReady);
    });
  }

  /** Whether decisions are taken locally now (Redis is away). */
  isLocal(): boolean {
    return this.local_ || this.redis.status !== 'ready';
  }

  async reserve(charges: readonly QuotaCharge[]): Promise<QuotaDecision> {
    if (this.isLocal()) return this.decideLocally(charges);
    const now = this.opts.clock.wall();
    const keys: string[] = [];
    const argv: (string | number)[] = [charges.length, now];
    for (const c of charges) {
      if (typeof c.window === 'string') {
        const span = spanOf(c.window, now);
        keys.push(this.key(c.key, span.bucket));
        argv.push(0, c.limit, c.amount, 0, 0, Math.ceil(span.ttlMs));
      } else {
        keys.push(this.key(c.key, 'r'));
        argv.push(1, c.limit, c.amount, c.window.ms / Math.max(1, c.limit), c.burst ?? c.limit, 0);
      }
    }
    let reply: Reply;
    try {
      reply = await this.redis.syReserve(keys.length, ...keys, ...argv);
    } catch (err) {
      this.fallBack(err instanceof Error ? err.message : String(err));
      return this.decideLocally(charges);
    }
    const refusedAt = reply[0];
    if (refusedAt === 0) {
      return {
        allowed: true,
        retryAfterMs: 0,
        shared: true,
        receipts: charges.map((c) => ({
          key: c.key,
          window: c.window,
          bucket: typeof c.window === 'string' ? spanOf(c.window, now).bucket : 0,
          limit: c.limit,
          amount: c.amount,
          shared: true,
        })),
      };
    }
    const c = charges[refusedAt - 1]!;
    const wait = Number(reply[1] ?? 0);
    let retryAfterMs: number;
    if (typeof c.window === 'string') {
      const span = spanOf(c.window, now);
      retryAfterMs =
        c.amount > c.limit ? span.end - now + (span.end - span.bucket) : span.end - now;
    } else retryAfterMs = wait < 0 ? c.window.ms : wait;
    return {
      allowed: false,
      refused: c.key,
      retryAfterMs: Math.max(1, Math.ceil(retryAfterMs)),
      receipts: [],
      shared: true,
    };
  }

  async settle(receipt: QuotaReceipt, actual: number): Promise<void> {
    const delta = actual - receipt.amount;
    if (delta === 0) return;
    if (!receipt.shared) {
      this.local.settleSync(receipt, actual);
      return;
    }
    if (this.isLocal()) return; // lost: the shared counter is out of reach (and will expire)
    const now = this.opts.clock.wall();
    try {
      if (typeof receipt.window === 'string') {
        const ttl = settleTtl(receipt, now);
        if (ttl <= 0) return; // the bucket no longer counts
        await this.redis.sySettleCount(this.key(receipt.key, receipt.bucket), delta, ttl);
      } else {
        const per = receipt.window.ms / Math.max(1, receipt.limit);
        await this.redis.sySettleRate(this.key(receipt.key, 'r'), now, delta, per);
      }
    } catch (err) {
      this.fallBack(err instanceof Error ? err.message : String(err));
    }
  }

  async usage(key: string, window: QuotaWindow): Promise<number> {
    if (this.isLocal()) return this.local.usage(key, window);
    const now = this.opts.clock.wall();
    if (typeof window === 'string') {
      const v = await this.redis.get(this.key(key, spanOf(window, now).bucket));
      return Math.max(0, Number(v ?? 0));
    }
    const v = await this.redis.get(this.key(key, 'r'));
    if (v === null) return 0;
    const [tat, per] = v.split(':').map(Number);
    return Math.max(0, (tat ?? now) - now) / (per ?? 1);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probing !== undefined) clearInterval(this.probing);
    this.redis.disconnect();
    await this.local.close();
  }

  private key(key: string, bucket: number | 'r'): string {
    return `${this.opts.prefix}${key}:${bucket}`;
  }

  private decideLocally(charges: readonly QuotaCharge[]): QuotaDecision {
    this.fallBack('not connected');
    publish(events.limiterLocal, { decisions: 1 });
    return this.local.reserveSync(charges);
  }

  /** Switches to local counting (once per outage) and starts probing for Redis's return. */
  private fallBack(why: string): void {
    if (this.local_ || this.closed) return;
    this.local_ = true;
    this.opts.logger.warn(
      { limiter: 'redis', reason: why },
      'quota limiter: Redis unreachable, counting locally',
    );
    publish(events.limiterState, { state: 'local', reason: why });
    this.probing = setInterval(() => void this.probe(), this.opts.probeMs);
    this.probing.unref();
  }

  private async probe(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    try {
      await this.redis.ping();
    } catch {
      return;
    }
    if (!this.local_ || this.closed) return;
    this.local_ = false;
    if (this.probing !== undefined) clearInterval(this.probing);
    this.probing = undefined;
    this.opts.logger.warn({ limiter: 'redis' }, 'quota limiter: Redis is back, counting shared');
    publish(events.limiterState, { state: 'shared', reason: 'redis answered' });
  }
}
