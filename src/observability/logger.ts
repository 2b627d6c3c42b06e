import { pino, type DestinationStream, type Logger as Pino } from 'pino';
import { events, subscribe } from '../core/events.js';
import { extend } from '../core/objects.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Keys whose values never reach a log, at the top level of a line or one level down. */
const SECRET_KEYS = ['authorization', 'api_key', 'key'] as const;
const CENSOR = '[redacted]';

/**
 * Structured JSON logs (pino). API keys never reach a log: requests are logged from the
 * `requestDone` event, which carries the key's fingerprint, and headers are never logged; the
 * redact list is a second line of defence for anything logged by hand.
 *
 * Top-level secret keys use pino's redaction, which costs nothing unless the key is present.
 * One level down (pino paths `*.key`) is checked here instead: pino's wildcard redaction walks
 * and copies every line, ~29% of all the bytes a proxied request allocated.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Pino {
  const slot: RedactorSlot = { redact: undefined };
  const logger = pino(
    {
      level,
      base: { service: 'switchyard' },
      // Personal data is redacted by the policy module (#7), installed with setLogRedactor.
      formatters: {
        log: (obj: Record<string, unknown>) => {
          const safe = censorNested(obj);
          return slot.redact === undefined ? safe : (slot.redact(safe) as Record<string, unknown>);
        },
      },
      redact: { paths: [...SECRET_KEYS], censor: CENSOR },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? bufferedStdout(),
  );
  slots.set(logger, slot);
  return logger;
}

/**
 * Stdout, written in blocks of about 4 KB (sonic-boom writes once 4 KB are held) instead of one
 * write per line (a write per request line cost ~10% of a proxied request's CPU). A timer flushes
 * a partial block within 250 ms, and pino flushes what is left when the process exits.
 */
function bufferedStdout(): DestinationStream {
  return bufferedDestination(1);
}

/** How soon a partial block of log lines is written. */
const FLUSH_MS = 250;

/**
 * A sonic-boom stream on `fd` that holds lines as bytes. In its default (text) mode sonic-boom
 * appends each line to a string and measures that string's UTF-8 length at every write, which
 * flattens it: each line copied everything held before it, up to 16 KB while a write was in
 * flight (~9 KB of garbage per line measured, three times what pino makes building the line).
 * Held as bytes, a line costs its one copy.
 *
 * The periodic flush is ours, not sonic-boom's `periodicFlush`: that one writes every 250 ms
 * whether or not anything is held (an empty write, on the thread pool, four times a second in an
 * idle gateway), and keeps writing to the fd after its owner is done with it. This one flushes
 * only when a line was written since the last flush, with no callback (with one, flush fsyncs
 * the fd and adds a drain and an error listener per call, which piled up under sustained load).
 */
export function bufferedDestination(fd: number): DestinationStream & {
  flush(cb?: (err?: Error) => void): void;
  flushSync(): void;
} {
  const boom = pino.destination({ dest: fd, sync: false, minLength: 4096, contentMode: 'buffer' });
  let held = false;
  const timer = setInterval(() => {
    if (!held) return;
    held = false;
    boom.flush();
  }, FLUSH_MS);
  timer.unref();
  boom.once('close', () => clearInterval(timer));
  return {
    write: (line: string) => {
      held = true;
      // sonic-boom's types say string; in buffer mode it takes bytes.
      return boom.write(Buffer.from(line, 'utf8') as unknown as string);
    },
    flush: (cb) => {
      held = false;
      boom.flush(cb);
    },
    flushSync: () => {
      held = false;
      boom.flushSync();
    },
  };
}

/**
 * `obj` with the secret keys of its nested plain objects censored: the same object when there
 * are none (no copy, no allocation), else a shallow copy with censored copies of those values.
 */
export function censorNested(obj: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const k in obj) {
    if (!Object.hasOwn(obj, k)) continue;
    const v = obj[k];
    if (typeof v !== 'object' || v === null || Array.isArray(v)) continue;
    const inner = v as Record<string, unknown>;
    let copy: Record<string, unknown> | undefined;
    for (const secret of SECRET_KEYS) {
      if (!Object.hasOwn(inner, secret)) continue;
      copy ??= { ...inner };
      copy[secret] = CENSOR;
    }
    if (copy === undefined) continue;
    out ??= { ...obj };
    out[k] = copy;
  }
  return out ?? obj;
}

interface RedactorSlot {
  redact: ((obj: object) => unknown) | undefined;
}
const slots = new WeakMap<Pino, RedactorSlot>();

/**
 * Routes every line of a logger made by `createLogger` (its children included) through `redact`
 * (the policy module's logging enforcement point, #7). Returns false for other loggers.
 */
export function setLogRedactor(
  logger: Pino,
  redact: ((obj: object) => unknown) | undefined,
): boolean {
  const slot = slots.get(logger);
  if (slot === undefined) return false;
  slot.redact = redact;
  return true;
}

/**
 * One log line per answered request: id, tenant, model, route taken, status and time.
 *
 * Lines are formatted in batches, once per turn of the event loop (`setImmediate`), not inside
 * each request's end: a turn ends many requests, and pino's code formats a run of lines with
 * its caches warm. One line at a time, between the rest of each request's work, cost ~20 µs of
 * the gateway's CPU per request at level info against ~4 µs in a loop of lines (bench:overhead's
 * load, level info against warn); batched, 130 against 143 µs per proxied request in all (six
 * alternating pairs of 5 s runs). Order is kept; a line waits at most for the end of the turn.
 * Lines still queued when the process exits are written (synchronously) on the way out.
 */
export function attachRequestLog(logger: Pino): () => void {
  const queue: QueuedLine[] = [];
  let scheduled = false;
  const drain = (): void => {
    scheduled = false;
    // Lines queued while draining (a destination that calls back) wait for the next turn.
    const n = queue.length;
    for (let i = 0; i < n; i++) {
      const q = queue[i]!;
      if (q.level === 'error') logger.error(q.line, q.msg);
      else if (q.level === 'warn') logger.warn(q.line, q.msg);
      else logger.info(q.line, q.msg);
    }
    queue.splice(0, n);
  };
  const onExit = (): void => {
    if (queue.length === 0) return;
    drain();
    const stream = (logger as unknown as Record<symbol, { flushSync?: () => void } | undefined>)[
      pino.symbols.streamSym
    ];
    stream?.flushSync?.();
  };
  process.on('exit', onExit);
  const unsubscribe = subscribe(events.requestDone, (e) => {
    const level: QueuedLine['level'] =
      e.code === 'SY_ERR_INTERNAL'
        ? 'error'
        : e.status >= 500 || (e.degraded !== undefined && e.degraded.length > 0)
          ? 'warn'
          : 'info';
    if (!logger.isLevelEnabled(level)) return;
    const line = {
      req_id: e.requestId,
      method: e.method,
      route: e.route,
      tenant: e.tenant,
      key_fp: e.keyFingerprint,
      model: e.model,
      class: e.trafficClass,
      status: e.status,
      code: e.code,
      ms: Math.round(e.durationMs * 1000) / 1000,
      stream: e.stream,
      path: e.path,
      // Journeys (#4): the same route the response carried, stage by stage.
      ...(e.journey === undefined
        ? {}
        : { journey: e.journey, journey_route: e.journeyRoute, degraded: e.degraded }),
    };
    queue.push(
      level === 'error'
        ? { level, line: extend(line, { err: e.error }), msg: 'request failed' }
        : // Every degraded mode (fallback, downgrade, stale answer) is a warning.
          {
            level,
            line,
            msg: e.status >= 500 || level === 'info' ? 'request' : 'request degraded',
          },
    );
    if (!scheduled) {
      scheduled = true;
      setImmediate(drain);
    }
  });
  return () => {
    unsubscribe();
    drain();
    process.off('exit', onExit);
  };
}

interface QueuedLine {
  readonly level: 'error' | 'warn' | 'info';
  readonly line: object;
  readonly msg: string;
}
