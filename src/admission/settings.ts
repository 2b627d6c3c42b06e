/**
 * What admission reads from the config. Declared here (admission may not import config/); the
 * config snapshot's types fit these shapes, and the composition root passes them in.
 */
export interface ClassSpec {
  /** Lower is more critical: 0 is served first and shed last. */
  readonly priority: number;
  /** Deadline of a request of this class that names none. */
  readonly deadline_ms: number;
  /** Longest wait in a concurrency queue before the request is shed. */
  readonly queue_timeout_ms: number;
  /** Pressure at which shedding of this class starts, and at which it is total (the curve). */
  readonly shed_from: number;
  readonly shed_full: number;
}

export interface QuotaSpec {
  readonly window_s: number;
  readonly requests?: number | undefined;
  readonly tokens?: number | undefined;
  /** Units that may be taken at once after a quiet spell (default: the whole limit). */
  readonly requests_burst?: number | undefined;
  readonly tokens_burst?: number | undefined;
  /** Currency units (the models' `cost` unit) per UTC day and calendar month. */
  readonly spend_per_day?: number | undefined;
  readonly spend_per_month?: number | undefined;
}

export interface TenantAdmission {
  /** The most critical class the tenant may use; a header asking for more is refused. */
  readonly max_class?: string | undefined;
  /** When set, the only classes the tenant may use. */
  readonly classes?: readonly string[] | undefined;
  readonly default_class?: string | undefined;
  readonly quotas?: QuotaSpec | undefined;
  readonly keys: readonly { readonly id: string; readonly quotas?: QuotaSpec | undefined }[];
}

export interface ConcurrencySpec {
  readonly algorithm: 'vegas' | 'fixed';
  readonly initial_limit: number;
  readonly min_limit: number;
  readonly max_limit: number;
  /** Most requests waiting per gate (model); more are refused at once. */
  readonly max_queue: number;
  /** Queue delay that counts as full pressure on the shed curve. */
  readonly target_queue_delay_ms: number;
  /** How often the no-load latency is measured again (the limit halves for a moment). */
  readonly probe_interval_ms: number;
  readonly smoothing: number;
}

export interface AdmissionSpec {
  readonly enabled: boolean;
  readonly default_class: string;
  /** Retry-After of a shed request, seconds. */
  readonly shed_retry_after_s: number;
  readonly concurrency: ConcurrencySpec;
  readonly estimate: { readonly output_tokens: number };
  /**
   * The gateway's own CPU overload (Envoy's overload manager): sustained event-loop lateness at
   * which the front door's pressure reaches 1 on every class's shed curve (and grows with the
   * lateness beyond it); 0 turns it off.
   */
  readonly overload: { readonly loop_delay_ms: number };
}

export interface ModeThresholds {
  readonly queue_delay_ms?: number | undefined;
  /** Share of calls the gates shed over a sample (their own refusals, not the mode's). */
  readonly shed_rate?: number | undefined;
  readonly saturation?: number | undefined;
  readonly error_rate?: number | undefined;
}

export interface ModeSwitches {
  /** Class deadlines (and client budgets) are capped at this share of the class deadline. */
  readonly deadline_scale: number;
  /** Classes refused at once with 503 in this mode. */
  readonly shed_classes: readonly string[];
  /** Added to every gate's pressure on the shed curve (shed earlier). */
  readonly shed_boost: number;
  /** In-process batching waits this many times longer for company. */
  readonly batch_delay_scale: number;
  /** Journeys answered 503 in this mode. */
  readonly journeys_disabled: readonly string[];
  /** Requests for a model go to a cheaper one: `{ chat-large: chat-small }`. */
  readonly model_substitutes: Readonly<Record<string, string>>;
  /** Caches keep answers this many times longer. */
  readonly cache_ttl_scale: number;
}

export interface ModeSpec {
  /** Entered when any set threshold is reached for `enter_samples` samples in a row. */
  readonly enter: ModeThresholds;
  /** Left when every set threshold is under these for `exit_samples` samples in a row. */
  readonly exit: ModeThresholds;
  readonly switches: ModeSwitches;
}

export interface ModesSpec {
  readonly sample_ms: number;
  readonly enter_samples: number;
  readonly exit_samples: number;
  /** A mode is kept at least this long after it was entered. */
  readonly min_hold_ms: number;
  readonly surge: ModeSpec;
  readonly emergency: ModeSpec;
}

export type ModeName = 'normal' | 'surge' | 'emergency';
export const MODE_LEVEL: Readonly<Record<ModeName, number>> = {
  normal: 0,
  surge: 1,
  emergency: 2,
};

export const NORMAL_SWITCHES: ModeSwitches = {
  deadline_scale: 1,
  shed_classes: [],
  shed_boost: 0,
  batch_delay_scale: 1,
  journeys_disabled: [],
  model_substitutes: {},
  cache_ttl_scale: 1,
};
