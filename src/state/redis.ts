import { Redis, type Command } from 'ioredis';
import type { Logger } from '../contracts/logger.js';

/**
 * The one way Switchyard connects to Redis (quotas, features, consent). ioredis' defaults turn a
 * Redis outage into a gateway outage (a command waited 73 s after SIGKILL, forever after SIGSTOP:
 * TOOLCHAIN.md), so a client on the request path never queues offline, never retries a command,
 * and gives up on one after `commandTimeoutMs`: the caller falls back or answers 503 at once.
 */
export interface RedisOptions {
  readonly url: string;
  readonly commandTimeoutMs: number;
  /** Longest wait between reconnection attempts (ms). */
  readonly reconnectMaxMs?: number;
  /** Who the connection is for, in its error log lines (`quota limiter`, `feature store`, ...). */
  readonly name: string;
  readonly logger?: Logger | undefined;
}

const reconnect = (o: RedisOptions) => (times: number) =>
  Math.min(50 * times, o.reconnectMaxMs ?? 1_000);

function logged(redis: Redis, o: RedisOptions): Redis {
  redis.on('error', (err: Error) => {
    o.logger?.debug({ err: err.message }, `${o.name}: redis connection error`);
  });
  return redis;
}

/** A client for the request path: fails fast instead of waiting for Redis. */
export function openRedis(o: RedisOptions): Redis {
  const redis = new Redis(o.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: Math.max(200, o.commandTimeoutMs * 4),
    enableReadyCheck: false,
    retryStrategy: reconnect(o),
  });
  timeCommands(redis, o.commandTimeoutMs);
  return logged(redis, o);
}

/**
 * Gives every command of `redis` `ms` to be answered, measured so that the gateway's own late
 * event loop is not blamed on Redis.
 *
 * ioredis' `commandTimeout` is a plain timer. When the loop is late (a CPU-starved process, a
 * long synchronous task), timers run before the loop reads its sockets (libuv runs the timers
 * phase before the poll phase), so a reply that arrived in time was still unread when its
 * timer fired: the command failed as "timed out" and callers fell back, e.g. the quota limiter
 * counted locally and over-admitted (113 of 100 across a loaded tree, #17). Here the expired
 * timer first lets one poll phase pass (`setImmediate` runs after it): a reply already in the
 * socket settles the command there, and only a command still unanswered then times out.
 */
function timeCommands(redis: Redis, ms: number): void {
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (command: Command, stream?: Parameters<Redis['sendCommand']>[1]) => {
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (!command.isSettled) command.reject(new Error('Command timed out'));
      });
    }, ms);
    const clear = (): void => clearTimeout(timer);
    command.promise.then(clear, clear);
    return send(command, stream);
  };
}

/** A subscriber connection: it may queue its SUBSCRIBE until connected; it serves no request. */
export function openRedisSubscriber(o: RedisOptions): Redis {
  return logged(
    new Redis(o.url, {
      connectTimeout: Math.max(200, o.commandTimeoutMs * 4),
      enableReadyCheck: false,
      retryStrategy: reconnect(o),
      maxRetriesPerRequest: null,
    }),
    o,
  );
}

/** Resolves true once the client is connected, false after `timeoutMs`. */
export function redisReady(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const onReady = (): void => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      resolve(ok);
    };
    redis.once('ready', onReady);
  });
}
