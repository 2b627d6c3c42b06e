/** Messages between the bench driver (overhead.ts) and its load generator child (load.ts). */

/** One kind of request: POST `body` to `url` with `headers`. */
export interface Target {
  readonly name: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export type LoadCommand =
  | { readonly id: number; readonly type: 'probe'; readonly target: Target }
  | {
      readonly id: number;
      readonly type: 'throughput';
      /** Each connection cycles through these (same origin); usually one. */
      readonly targets: readonly Target[];
      readonly connections: number;
      readonly durationS: number;
    }
  | {
      readonly id: number;
      readonly type: 'sequential';
      /** Measured alternately, in `blocks` rounds, so drift hits every target alike. */
      readonly targets: readonly Target[];
      readonly warmup: number;
      readonly count: number;
      readonly blocks: number;
    };

/** Milliseconds. */
export interface LatencySummary {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

export interface ProbeResult {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

export interface ThroughputResult {
  /** Responses of any status received during the run. */
  readonly responses: number;
  readonly ok: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly wallS: number;
  readonly reqPerS: number;
  /** 2xx responses only. */
  readonly latency: LatencySummary;
}

export interface SequentialResult {
  readonly byTarget: Readonly<Record<string, LatencySummary & { readonly failures: number }>>;
}

export type LoadReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string };
