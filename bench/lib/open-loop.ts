import { Pool } from 'undici';

/**
 * An open-loop load generator: requests arrive as a Poisson process per traffic class, at their
 * scheduled time, whether or not earlier ones were answered (autocannon is closed-loop, so an
 * overloaded server slows its own load down and shedding cannot be measured). Latency counts
 * from the scheduled arrival, so a late send is charged to the server's latency, not hidden
 * (no coordinated omission).
 */
export interface ClassLoad {
  readonly name: string;
  /** Mean arrivals per second. */
  readonly ratePerS: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** This class's path, when it differs from the run's. */
  readonly path?: string;
}

export interface OpenLoopOptions {
  /** Origin of the server, such as `http://127.0.0.1:8080`. */
  readonly origin: string;
  readonly path: string;
  readonly durationMs: number;
  readonly classes: readonly ClassLoad[];
  readonly connections: number;
  /** A request still unanswered after this long is counted as a timeout. */
  readonly timeoutMs: number;
  readonly random: () => number;
}

export interface Sample {
  readonly cls: string;
  /** Scheduled arrival, ms from the start. */
  readonly at: number;
  readonly latencyMs: number;
  /** HTTP status; 0 for a timeout or a connection error. */
  readonly status: number;
  readonly retryAfter: string | undefined;
  /** The error code and message of a JSON error answer (`SY_ERR_SHED: ...`). */
  readonly error?: string;
}

/** Exponential inter-arrival time of a Poisson process with the given rate, ms. */
function nextGapMs(rate: number, random: () => number): number {
  return (-Math.log(1 - random()) / rate) * 1000;
}

export async function runOpenLoop(opts: OpenLoopOptions): Promise<Sample[]> {
  const pool = new Pool(opts.origin, {
    connections: opts.connections,
    pipelining: 1,
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
  });
  const samples: Sample[] = [];
  const pending = new Set<Promise<void>>();
  const t0 = performance.now();
  const next = opts.classes.map((c) => nextGapMs(c.ratePerS, opts.random));

  const fire = (c: ClassLoad, at: number): void => {
    const p = (async () => {
      let status = 0;
      let retryAfter: string | undefined;
      let error: string | undefined;
      try {
        const res = await pool.request({
          method: 'POST',
          path: c.path ?? opts.path,
          headers: { 'content-type': 'application/json', ...c.headers },
          body: c.body,
        });
        status = res.statusCode;
        if (status >= 400) error = errorOf(await res.body.text());
        else await res.body.dump();
        const ra = res.headers['retry-after'];
        retryAfter = typeof ra === 'string' ? ra : undefined;
      } catch {
        status = 0;
      }
      samples.push({
        cls: c.name,
        at,
        latencyMs: performance.now() - t0 - at,
        status,
        retryAfter,
        ...(error === undefined ? {} : { error }),
      });
    })();
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };

  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now() - t0;
      opts.classes.forEach((c, i) => {
        while (next[i]! <= now && next[i]! < opts.durationMs) {
          fire(c, next[i]!);
          next[i]! += nextGapMs(c.ratePerS, opts.random);
        }
      });
      if (now >= opts.durationMs) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all([...pending]);
  await pool.close();
  return samples;
}

/** `code: message` of an error body: OpenAI style (`{error: {code, message}}`) or KServe's. */
function errorOf(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as {
      error?: string | { code?: string; message?: string };
      code?: string;
    };
    const e = body.error;
    if (typeof e === 'string') return body.code === undefined ? e : `${body.code}: ${e}`;
    return e?.code === undefined ? undefined : `${e.code}: ${e.message ?? ''}`;
  } catch {
    return undefined;
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}
