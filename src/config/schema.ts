import { z } from 'zod';
import { DEFAULTS } from './defaults.js';

const D = DEFAULTS;
const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'use letters, digits, ".", "_" or "-" (max 128)');
const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const ms = z.number().int().positive();

/** A secret is never inline: it comes from an environment variable or a file. */
export const secretRefSchema = z.union([
  z.strictObject({ env: z.string().min(1) }),
  z.strictObject({ file: z.string().min(1) }),
]);
export type SecretRef = z.infer<typeof secretRefSchema>;

const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//.test(u), 'must be an http:// or https:// URL');

const limitsSchema = z
  .strictObject({
    body_bytes: posInt.default(D.server.limits.body_bytes),
    /** Cap on a multipart upload streamed to an upstream (transcriptions); 413 past it. */
    upload_bytes: posInt.default(D.server.limits.upload_bytes),
    header_bytes: posInt.default(D.server.limits.header_bytes),
    headers_timeout_ms: ms.default(D.server.limits.headers_timeout_ms),
    request_timeout_ms: ms.default(D.server.limits.request_timeout_ms),
    keep_alive_timeout_ms: ms.default(D.server.limits.keep_alive_timeout_ms),
    timeout_check_interval_ms: ms.default(D.server.limits.timeout_check_interval_ms),
    max_connections: posInt.default(D.server.limits.max_connections),
    linger_bytes: nonNegInt.default(D.server.limits.linger_bytes),
    linger_ms: ms.default(D.server.limits.linger_ms),
  })
  .prefault({});

const deadlineSchema = z
  .strictObject({
    default_ms: ms.default(D.server.deadline.default_ms),
    min_ms: ms.default(D.server.deadline.min_ms),
    max_ms: ms.default(D.server.deadline.max_ms),
  })
  .prefault({})
  .refine((d) => d.min_ms <= d.default_ms && d.default_ms <= d.max_ms, {
    message: 'must satisfy min_ms <= default_ms <= max_ms',
  });

const streamSchema = z
  .strictObject({
    idle_timeout_ms: ms.default(D.server.stream.idle_timeout_ms),
    idle_timeout_cap_ms: ms.default(D.server.stream.idle_timeout_cap_ms),
    duration_ms: ms.default(D.server.stream.duration_ms),
    duration_cap_ms: ms.default(D.server.stream.duration_cap_ms),
  })
  .prefault({})
  .refine((s) => s.idle_timeout_ms <= s.idle_timeout_cap_ms && s.duration_ms <= s.duration_cap_ms, {
    message:
      'must satisfy idle_timeout_ms <= idle_timeout_cap_ms and duration_ms <= duration_cap_ms',
  });

const grpcSchema = z
  .strictObject({
    enabled: z.boolean().default(D.server.grpc.enabled),
    host: z.string().min(1).optional(),
    port: z.number().int().min(0).max(65535).default(D.server.grpc.port),
  })
  .prefault({});

const serverSchema = z
  .strictObject({
    host: z.string().min(1).default(D.server.host),
    port: z.number().int().min(0).max(65535).default(D.server.port),
    limits: limitsSchema,
    deadline: deadlineSchema,
    stream: streamSchema,
    grpc: grpcSchema,
    drain_ms: nonNegInt.default(D.server.drain_ms),
    heap_growing_percent: z.number().int().min(0).max(400).default(D.server.heap_growing_percent),
    workers: z
      .union([z.number().int().min(1).max(1024), z.literal('auto')])
      .default(D.server.workers),
  })
  .prefault({});

const retrySchema = z
  .strictObject({
    max_attempts: z.number().int().min(1).max(10).default(D.model.retry.max_attempts),
    base_delay_ms: nonNegInt.default(D.model.retry.base_delay_ms),
    max_delay_ms: nonNegInt.default(D.model.retry.max_delay_ms),
    /**
     * The retry budget is a token bucket per upstream (gRPC's retry throttling, gRFC A6): it
     * holds up to `budget_tokens`, starts full, loses a token for each attempt the upstream
     * failed (5xx, unreachable, timeout, unreadable, 429) and gains `budget_ratio` for each it
     * answered. A retry may start only while more than half the tokens are left. Retries thus
     * add at most `budget_ratio` attempts per answered request (plus half the bucket, once),
     * whatever the request rate: under an outage they stop after a few failures.
     */
    budget_ratio: z.number().min(0).max(1).default(D.model.retry.budget_ratio),
    budget_tokens: z.number().positive().max(1000).default(D.model.retry.budget_tokens),
  })
  .prefault({});

const breakerSchema = z
  .strictObject({
    min_calls: posInt.default(D.model.breaker.min_calls),
    failure_ratio: z.number().gt(0).max(1).default(D.model.breaker.failure_ratio),
    consecutive_failures: posInt.default(D.model.breaker.consecutive_failures),
    window_ms: ms.default(D.model.breaker.window_ms),
    cooldown_ms: ms.default(D.model.breaker.cooldown_ms),
    half_open_probes: posInt.default(D.model.breaker.half_open_probes),
  })
  .prefault({});

const poolSchema = z
  .strictObject({
    connections: posInt.default(D.model.pool.connections),
    keep_alive_ms: ms.default(D.model.pool.keep_alive_ms),
  })
  .prefault({});

const costSchema = z.strictObject({
  /** Currency units per 1k input tokens. */
  in_per_1k: z.number().nonnegative().default(0),
  /** Currency units per 1k output tokens. */
  out_per_1k: z.number().nonnegative().default(0),
  per_call: z.number().nonnegative().default(0),
  /** Compute time: currency units per second of model time (journeys' cost model, #4). */
  per_second: z.number().nonnegative().default(0),
  /** Per image an image generation returned (#16 part 4). */
  per_image: z.number().nonnegative().default(0),
  /** Per second of audio a transcription upstream reported (#16 part 4). */
  per_audio_second: z.number().nonnegative().default(0),
});

/** A latency prior for journeys' cheapest-fit routing until live traffic has taught one (#4). */
const latencySchema = z.strictObject({
  /** Expected p95 latency in ms. */
  prior_ms: z.number().positive(),
});

/** A journey (#4): its stages are compiled and validated by the orchestrator at runtime build. */
const journeySchema = z.strictObject({
  description: z.string().optional(),
  class: name.default(D.journey.class),
  /** The journey's budget: caps the class's (or the client's) deadline. */
  deadline_ms: ms.optional(),
  stages: z.array(z.unknown()).min(1),
});

const AD = D.admission;
const concurrencyFields = {
  algorithm: z.enum(['vegas', 'fixed']),
  initial_limit: posInt,
  min_limit: posInt,
  max_limit: posInt,
  max_queue: posInt,
  target_queue_delay_ms: ms,
  probe_interval_ms: ms,
  smoothing: z.number().gt(0).max(1),
};
const limitsInOrder = (c: {
  readonly min_limit?: number | undefined;
  readonly initial_limit?: number | undefined;
  readonly max_limit?: number | undefined;
}): boolean =>
  (c.min_limit ?? 0) <= (c.initial_limit ?? Infinity) &&
  (c.initial_limit ?? 0) <= (c.max_limit ?? Infinity) &&
  (c.min_limit ?? 0) <= (c.max_limit ?? Infinity);
const concurrencySchema = z
  .strictObject({
    algorithm: concurrencyFields.algorithm.default(AD.concurrency.algorithm),
    initial_limit: posInt.default(AD.concurrency.initial_limit),
    min_limit: posInt.default(AD.concurrency.min_limit),
    max_limit: posInt.default(AD.concurrency.max_limit),
    max_queue: posInt.default(AD.concurrency.max_queue),
    target_queue_delay_ms: ms.default(AD.concurrency.target_queue_delay_ms),
    probe_interval_ms: ms.default(AD.concurrency.probe_interval_ms),
    smoothing: concurrencyFields.smoothing.default(AD.concurrency.smoothing),
  })
  .prefault({})
  .refine(limitsInOrder, { message: 'must satisfy min_limit <= initial_limit <= max_limit' });
/** A model's own concurrency gate settings, over `admission.concurrency` (#14). */
const modelConcurrencySchema = z
  .strictObject({
    algorithm: concurrencyFields.algorithm.optional(),
    initial_limit: posInt.optional(),
    min_limit: posInt.optional(),
    max_limit: posInt.optional(),
    max_queue: posInt.optional(),
    target_queue_delay_ms: ms.optional(),
    probe_interval_ms: ms.optional(),
    smoothing: concurrencyFields.smoothing.optional(),
  })
  .refine(limitsInOrder, { message: 'must satisfy min_limit <= initial_limit <= max_limit' });
/** Fields every model has, whatever serves it. */
const modelCommon = {
  description: z.string().optional(),
  tier: z.enum(['edge', 'regional', 'central']).default(D.model.tier),
  /** Models to try, in order, when this one fails with a retryable error. */
  fallback: z.array(name).default([]),
  cost: costSchema.optional(),
  latency: latencySchema.optional(),
  /**
   * This model's concurrency gate, over `admission.concurrency`. In-process models default to a
   * fixed limit that keeps their batches full (see wiring); set it to tune either kind.
   */
  concurrency: modelConcurrencySchema.optional(),
  /** Where the model runs (#17): its region, and the jurisdiction residency rules check. Default: the node's. */
  region: name.optional(),
  jurisdiction: name.optional(),
};

/** Fields of a model served by an HTTP upstream. */
const httpModel = {
  ...modelCommon,
  url: httpUrl,
  /** The model name the upstream knows; defaults to this model's name. */
  upstream_model: z.string().min(1).optional(),
  api_key: secretRefSchema.optional(),
  /** Extra static headers for the upstream (never secrets: use api_key). */
  headers: z.record(z.string(), z.string()).default({}),
  /** Cap on the whole answer, headers to last byte. */
  timeout_ms: ms.default(D.model.timeout_ms),
  /**
   * Cap on the wait for response headers and, for a stream, for its first event. Keep it well
   * under the deadline: an upstream that accepts and never answers is found by this timeout.
   */
  first_byte_timeout_ms: ms.default(D.model.first_byte_timeout_ms),
  /**
   * When a fallback follows this model in a chain, an attempt on it waits for its first byte at
   * most this share of the request's remaining deadline (and at most `first_byte_timeout_ms`),
   * so the next model keeps the rest to answer in. Its retries fit in the same share, and a
   * timeout goes to the next model rather than being retried on this one. A cut at
   * the share is `SY_ERR_ATTEMPT_TIMEOUT` in the route; it counts against the breaker unless
   * the upstream answered other calls meanwhile. 1: no cut beyond `first_byte_timeout_ms`.
   * The last model of a chain, and a model called without fallbacks, always get the whole rest.
   */
  first_byte_share: z.number().gt(0).max(1).default(D.model.first_byte_share),
  max_response_bytes: posInt.default(D.model.max_response_bytes),
  pool: poolSchema,
  retry: retrySchema,
  breaker: breakerSchema,
};

const openaiModelSchema = z.strictObject({
  backend: z.literal('openai'),
  ...httpModel,
  /**
   * What the upstream serves: chat and embeddings, and the pass-through operations (#16 part 4):
   * legacy `completions`, `moderations`, `images` (generations), `speech` and `transcriptions`.
   */
  operations: z
    .array(
      z.enum([
        'chat',
        'embeddings',
        'completions',
        'moderations',
        'images',
        'speech',
        'transcriptions',
      ]),
    )
    .min(1)
    .default(['chat']),
  /** The upstream speaks the OpenAI Responses API: `/v1/responses` is passed through (#16). */
  responses: z.boolean().default(false),
});

const kserveModelSchema = z.strictObject({
  backend: z.literal('kserve'),
  ...httpModel,
});

/** An upstream that speaks the Anthropic Messages API (#16): chat only. */
const anthropicModelSchema = z.strictObject({
  backend: z.literal('anthropic'),
  ...httpModel,
  /** The `anthropic-version` header sent upstream. */
  anthropic_version: z.string().min(1).default(D.anthropicModel.anthropic_version),
  /** max_tokens for a chat request that sets none: the Messages API requires one. */
  default_max_tokens: posInt.default(D.anthropicModel.default_max_tokens),
});

/** Another Switchyard gateway, the parent of this node in the tree (#17). */
const { api_key: _noApiKey, ...httpModelNoKey } = httpModel;
const switchyardModelSchema = z.strictObject({
  backend: z.literal('switchyard'),
  ...httpModelNoKey,
  /**
   * More replicas of the same parent, beside `url`: calls go round all of them, each replica has
   * its own breaker (`breaker`), and a call one replica cannot take (connect error, reset, 5xx,
   * shedding, its breaker open) moves to the next within the deadline.
   */
  replicas: z.array(httpUrl).default([]),
  /** What the parent serves under `upstream_model`: its OpenAI routes, its KServe route, or both. */
  operations: z
    .array(z.enum(['chat', 'embeddings', 'infer']))
    .min(1)
    .default(['chat']),
  /** The service key tenant assertions are signed with; the parent lists it in `auth.service_keys`. */
  service_key: z.strictObject({
    id: name,
    secret: secretRefSchema,
    /** How long an assertion lives past the call's deadline (clock skew between the nodes). */
    ttl_ms: ms.default(D.switchyardModel.assertion_ttl_ms),
  }),
});

const versionPolicySchema = z.union([
  z.literal('all'),
  z.strictObject({ latest: posInt }),
  z.strictObject({ specific: z.array(z.string().min(1)).min(1) }),
]);

const batchSchema = z
  .strictObject({
    /** Largest batch in rows (1 turns batching off). */
    max: posInt.default(D.onnxModel.batch.max),
    /** Longest wait of the oldest queued request for company, µs. */
    delay_us: nonNegInt.default(D.onnxModel.batch.delay_us),
    /** Batch sizes dispatched at once, without waiting out the delay. */
    preferred: z.array(posInt).default([...D.onnxModel.batch.preferred]),
    /** Most rows that may wait; more are refused with 503 SY_ERR_QUEUE_FULL. */
    queue: posInt.default(D.onnxModel.batch.queue),
  })
  .prefault({});

const onnxModelSchema = z.strictObject({
  backend: z.literal('onnx'),
  ...modelCommon,
  tier: z.enum(['edge', 'regional', 'central']).default(D.onnxModel.tier),
  /** The model store: one subdirectory per version holding model.onnx (and model.json). */
  store: z.string().min(1),
  version_policy: versionPolicySchema.default(D.onnxModel.version_policy),
  /** The version requests without one get; default: the newest loaded. */
  default_version: z.string().min(1).optional(),
  batch: batchSchema,
  allow_non_finite: z.boolean().default(D.onnxModel.allow_non_finite),
  /** Load new versions dropped into the store without a restart. */
  watch: z.boolean().default(D.onnxModel.watch),
});

export const modelSchema = z.discriminatedUnion('backend', [
  openaiModelSchema,
  kserveModelSchema,
  anthropicModelSchema,
  switchyardModelSchema,
  onnxModelSchema,
]);

// Admission control (#5): classes, quotas, concurrency, modes.
const quotaSchema = z.strictObject({
  /** `requests` and `tokens` are rates: so many per `window_s`, refilled continuously (GCRA). */
  window_s: posInt.default(60),
  requests: posInt.optional(),
  tokens: posInt.optional(),
  /** How many may be taken at once after a quiet spell (default: the whole limit). */
  requests_burst: posInt.optional(),
  tokens_burst: posInt.optional(),
  /** Spend budgets in the models' cost unit, per UTC day and per calendar month. */
  spend_per_day: z.number().finite().positive().optional(),
  spend_per_month: z.number().finite().positive().optional(),
});

const classSchema = z
  .strictObject({
    /** Lower is more critical: served first, shed last. */
    priority: z.number().int().min(0).max(1_000),
    /** Deadline of a request that sends no x-switchyard-timeout-ms. */
    deadline_ms: ms.default(D.class.deadline_ms),
    /** Longest wait in a model's concurrency queue before the request is shed (503). */
    queue_timeout_ms: ms.default(D.class.queue_timeout_ms),
    /** The shed curve: shedding starts at this queue pressure and is total at shed_full. */
    shed_from: z.number().finite().min(0).default(D.class.shed_from),
    shed_full: z.number().finite().min(0).default(D.class.shed_full),
  })
  .refine((c) => c.shed_full > c.shed_from, { message: 'shed_full must be > shed_from' });

const thresholdsSchema = z.strictObject({
  queue_delay_ms: z.number().finite().nonnegative().optional(),
  saturation: z.number().finite().nonnegative().optional(),
  error_rate: z.number().min(0).max(1).optional(),
  /** Share of calls the concurrency gates shed (queue full, would wait too long, shed curve). */
  shed_rate: z.number().min(0).max(1).optional(),
});

const switchesSchema = z.strictObject({
  deadline_scale: z.number().gt(0).max(1).default(1),
  shed_classes: z.array(name).default([]),
  shed_boost: z.number().finite().min(0).default(0),
  batch_delay_scale: z.number().finite().min(1).default(1),
  journeys_disabled: z.array(name).default([]),
  model_substitutes: z.record(name, name).default({}),
  cache_ttl_scale: z.number().finite().min(1).default(1),
});

const modeSchema = z.strictObject({
  enter: thresholdsSchema,
  exit: thresholdsSchema,
  switches: switchesSchema.prefault({}),
});

const admissionSchema = z
  .strictObject({
    enabled: z.boolean().default(AD.enabled),
    default_class: name.default(AD.default_class),
    shed_retry_after_s: posInt.default(AD.shed_retry_after_s),
    concurrency: concurrencySchema,
    estimate: z
      .strictObject({ output_tokens: nonNegInt.default(AD.estimate.output_tokens) })
      .prefault({}),
    /** The gateway's own CPU overload, shed at the front door (Envoy's overload manager). */
    overload: z
      .strictObject({
        /** Sustained event-loop lateness (ms) at which CPU pressure is 1 on the shed curves; 0: off. */
        loop_delay_ms: nonNegInt.default(AD.overload.loop_delay_ms),
      })
      .prefault({}),
    limiter: z
      .strictObject({
        store: z.enum(['memory', 'redis']).default(AD.limiter.store),
        url: z
          .string()
          .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
          .optional(),
        prefix: z.string().min(1).default(AD.limiter.prefix),
        command_timeout_ms: ms.default(AD.limiter.command_timeout_ms),
        probe_ms: ms.default(AD.limiter.probe_ms),
        /** Share of each limit a replica enforces alone while Redis is away (1/replicas is exact). */
        local_share: z.number().gt(0).max(1).default(AD.limiter.local_share),
      })
      .prefault({})
      .refine((l) => l.store !== 'redis' || l.url !== undefined, {
        message: 'store: redis needs url',
      }),
  })
  .prefault({});

const DM = D.modes;
const modesSchema = z
  .strictObject({
    sample_ms: ms.default(DM.sample_ms),
    enter_samples: posInt.default(DM.enter_samples),
    exit_samples: posInt.default(DM.exit_samples),
    min_hold_ms: nonNegInt.default(DM.min_hold_ms),
    surge: modeSchema.prefault(clone(DM.surge)),
    emergency: modeSchema.prefault(clone(DM.emergency)),
  })
  .prefault({});

/** A mutable copy of a default (zod's input types are not readonly). */
function clone<T>(v: T): DeepMutable<T> {
  return structuredClone(v);
}
type DeepMutable<T> = { -readonly [K in keyof T]: DeepMutable<T[K]> };

const keySchema = z.strictObject({
  id: name,
  hash: z.string().regex(/^hmac-sha256:[0-9a-f]{64}$/, 'must be "hmac-sha256:<64 hex>"'),
  /** Admin keys may call the admin API (`/admin/*`): mode overrides, registry, experiments. */
  admin: z.boolean().default(false),
  /** Quotas of this key alone, on top of its tenant's. */
  quotas: quotaSchema.optional(),
});

const tenantSchema = z.strictObject({
  keys: z.array(keySchema).default([]),
  /** Model names or prefixes ending in `*` this tenant may use. */
  models: z.array(z.string().min(1)).default(['*']),
  /** The most critical traffic class the tenant may use (x-switchyard-class above it: 403). */
  max_class: name.optional(),
  /** When set, the only classes the tenant may use. */
  classes: z.array(name).optional(),
  /** The class of a request that names none (default: admission.default_class). */
  default_class: name.optional(),
  quotas: quotaSchema.optional(),
  /**
   * Spend budgets enforced from the cost ledger's totals (#15): exact across replicas sharing
   * the state store, unlike `quotas.spend_per_day` (a limiter counter reserved on estimates).
   */
  budget: z
    .strictObject({
      /** Most the tenant may spend per UTC day, in the models' cost unit; then 429 SY_ERR_BUDGET_EXHAUSTED. */
      daily_spend: z.number().finite().positive().optional(),
    })
    .optional(),
});

const authSchema = z
  .strictObject({
    /** The server secret the key hashes are keyed with. */
    secret: secretRefSchema.optional(),
    /** When set, requests without a key are served as this tenant. */
    anonymous_tenant: name.optional(),
    /**
     * Keys child gateways sign tenant assertions with (#17): a request carrying a valid
     * `x-switchyard-assertion` is served as the tenant it names, under that tenant's quotas.
     */
    service_keys: z.array(z.strictObject({ id: name, secret: secretRefSchema })).default([]),
    /** Longest assertion lifetime accepted, ms. */
    assertion_max_ttl_ms: ms.default(D.tree.assertion_max_ttl_ms),
  })
  .prefault({});

// Feature store, consent, policy labels and residency (#7).
const purposeEnum = z.enum(['behavioral_inference', 'cross_service_personalization', 'location']);
const labelEnum = z.enum(['public', 'consented', 'sensitive', 'restricted']);
const finite = z.number().finite();

const featureDefinitionSchema = z
  .strictObject({
    entity: name,
    type: z.enum(['float', 'int', 'bool', 'string', 'enum', 'vector']),
    min: finite.optional(),
    max: finite.optional(),
    values: z.array(z.string().min(1)).min(1).optional(),
    max_length: posInt.optional(),
    dims: posInt.max(65_536).optional(),
    ttl_ms: ms.optional(),
    label: labelEnum,
    /** The consent purpose needed by `consented`, `sensitive` and `restricted` values. */
    purpose: purposeEnum.optional(),
    version: posInt.default(1),
    lineage: z.strictObject({ source: z.string().min(1), transformation: z.string().min(1) }),
    description: z.string().optional(),
  })
  .superRefine((f, ctx) => {
    const bad = (path: string, message: string): void => {
      ctx.addIssue({ code: 'custom', path: [path], message });
    };
    if (f.type === 'enum' && f.values === undefined) bad('values', 'an enum feature needs values');
    if (f.type !== 'enum' && f.values !== undefined)
      bad('values', 'only enum features have values');
    if (f.type === 'vector' && f.dims === undefined) bad('dims', 'a vector feature needs dims');
    if (f.type !== 'vector' && f.dims !== undefined) bad('dims', 'only vector features have dims');
    if (f.min !== undefined && f.max !== undefined && f.min > f.max) bad('min', 'must be <= max');
    if (
      (f.min !== undefined || f.max !== undefined) &&
      !['float', 'int', 'vector'].includes(f.type)
    )
      bad('min', 'min/max apply to float, int and vector features only');
    if (f.max_length !== undefined && f.type !== 'string')
      bad('max_length', 'only string features have max_length');
    if (f.label !== 'public' && f.purpose === undefined)
      bad('purpose', `a ${f.label} feature needs the consent purpose it serves`);
  });

const featureStoreSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('embedded'),
    /** SQLite file (relative to the config) the in-process store writes behind to; absent: memory only. */
    sqlite: z.string().min(1).optional(),
    flush_ms: ms.default(D.features.store.flush_ms),
  }),
  z.strictObject({
    kind: z.literal('redis'),
    url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'),
    prefix: z.string().min(1).default(D.features.redis_prefix),
    command_timeout_ms: ms.default(D.features.redis_command_timeout_ms),
    /** A read-through cache in this process (#17, edge nodes); absent: every read goes to Redis. */
    cache: z
      .strictObject({
        ttl_ms: ms.default(D.features.cache.ttl_ms),
        stale_ms: nonNegInt.default(D.features.cache.stale_ms),
        max_entries: z.number().int().positive().default(D.features.cache.max_entries),
        labels: z.array(labelEnum).default([...D.features.cache.labels]),
      })
      .optional(),
  }),
]);

/** What a label allows at one enforcement point: always, with the purpose's consent, or never. */
const ruleEnum = z.enum(['allow', 'consent', 'deny']);
const labelRuleSchema = z.strictObject({
  ingestion: ruleEnum,
  retrieval: ruleEnum,
  model_input: ruleEnum,
  logging: ruleEnum,
  /** Model tiers this label's data may be passed to (absent: any). */
  model_tiers: z.array(z.enum(['edge', 'regional', 'central'])).optional(),
});
const labelRulesSchema = z.strictObject({
  public: labelRuleSchema.default(D.privacy.labels.public),
  consented: labelRuleSchema.default(D.privacy.labels.consented),
  sensitive: labelRuleSchema.default(D.privacy.labels.sensitive),
  restricted: labelRuleSchema.default(D.privacy.labels.restricted),
});
const purposeSchema = z.strictObject({
  /** Consent a user has before any record is written (opt-in: false). */
  default: z.boolean().default(false),
  /** Per-label overrides of `privacy.labels` for data serving this purpose. */
  labels: z
    .strictObject({
      public: labelRuleSchema.optional(),
      consented: labelRuleSchema.optional(),
      sensitive: labelRuleSchema.optional(),
      restricted: labelRuleSchema.optional(),
    })
    .default({}),
  description: z.string().optional(),
});

const privacySchema = z
  .strictObject({
    node: z
      .strictObject({
        id: name.default(D.privacy.node.id),
        /** This node's jurisdiction; it is added to that jurisdiction's node set. */
        jurisdiction: name.optional(),
      })
      .prefault({}),
    /** Residency: jurisdiction tag → the gateway nodes that may hold and process its data. */
    jurisdictions: z.record(name, z.strictObject({ nodes: z.array(name).default([]) })).default({}),
    purposes: z
      .strictObject({
        behavioral_inference: purposeSchema.prefault({}),
        cross_service_personalization: purposeSchema.prefault({}),
        location: purposeSchema.prefault({}),
      })
      .prefault({}),
    labels: labelRulesSchema.prefault({}),
    /**
     * Most consent records one tenant may hold (each is kept in memory). A change that would
     * write a record for one user more is refused with 429 SY_ERR_TENANT_STORAGE_FULL, unless it
     * revokes consent: a revocation is never refused. Applies on reload.
     */
    max_consent_records_per_tenant: posInt.default(D.privacy.max_consent_records_per_tenant),
    /** SQLite file (relative to the config) for consent records; absent: memory only. */
    consent_sqlite: z.string().min(1).optional(),
    /** Consent records in Redis, shared by every replica (scaled); instead of consent_sqlite. */
    consent_redis: z
      .strictObject({
        url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'),
        prefix: z.string().min(1).default(D.privacy.consent_redis_prefix),
        command_timeout_ms: ms.default(D.features.redis_command_timeout_ms),
      })
      .optional(),
  })
  .prefault({})
  .superRefine((p, ctx) => {
    if (p.consent_sqlite !== undefined && p.consent_redis !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['consent_redis'],
        message: 'use consent_sqlite (embedded) or consent_redis (scaled), not both',
      });
    const j = p.node.jurisdiction;
    if (j !== undefined && !(j in p.jurisdictions)) {
      ctx.addIssue({
        code: 'custom',
        path: ['node', 'jurisdiction'],
        message: `unknown jurisdiction "${j}" (declare it under privacy.jurisdictions)`,
      });
    }
  });

// Vector retrieval: collections, their shards and where each shard lives (#7).
const vectorShardSchema = z
  .strictObject({
    id: name,
    tier: z.enum(['hot', 'warm', 'cold']).default('warm'),
    /** Override of the collection's index kind (`exact` suits small hot session shards). */
    index: z.enum(['hnsw', 'exact']).optional(),
    tenants: z.array(name).min(1).optional(),
    geos: z.array(name).min(1).optional(),
    /** Residency: jurisdictions whose data this shard holds (`null`: untagged data). */
    jurisdictions: z.array(name.nullable()).min(1).optional(),
    entity_types: z.array(name).min(1).optional(),
    /** The gateway node that holds the shard (`privacy.node.id` names this one); default: this node. */
    node: name.optional(),
    /** That node's URL; required with `node`, used when the node is not this one. */
    url: httpUrl.optional(),
    /** A key of that node (an admin key: it acts for every tenant). */
    api_key: secretRefSchema.optional(),
    max_size: posInt.optional(),
    ttl_ms: ms.optional(),
  })
  .refine((s) => s.node === undefined || s.url !== undefined, {
    message: "a shard placed on a node needs that node's url",
    path: ['url'],
  });

const vectorCollectionSchema = z.strictObject({
  dims: posInt.max(65_536),
  metric: z.enum(['cos', 'l2sq', 'ip']).default(D.vectors.metric),
  index: z.enum(['hnsw', 'exact']).default(D.vectors.index),
  hnsw: z
    .strictObject({
      connectivity: posInt.default(D.vectors.hnsw.connectivity),
      expansion_add: posInt.default(D.vectors.hnsw.expansion_add),
      expansion_search: posInt.default(D.vectors.hnsw.expansion_search),
      quantization: z.enum(['f32', 'f16', 'i8']).default(D.vectors.hnsw.quantization),
    })
    .prefault({}),
  shards: z.array(vectorShardSchema).min(1),
});

// Release management (#6): the state store, the registry's pinned keys, declarative experiments.
const stateSchema = z.union([
  z.strictObject({ sqlite: z.string().min(1) }),
  z.strictObject({
    postgres: z.string().min(1),
    schema: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/)
      .optional(),
  }),
]);
// The journeys' response cache (#17): in process, or in Redis shared by replicas.
const cacheSchema = z
  .strictObject({
    store: z.enum(['memory', 'redis']).default(D.cache.store),
    url: z
      .string()
      .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
      .optional(),
    prefix: z.string().min(1).default(D.cache.prefix),
    command_timeout_ms: z.number().int().positive().default(D.cache.command_timeout_ms),
  })
  .prefault({})
  .refine((c) => c.store !== 'redis' || c.url !== undefined, { message: 'store: redis needs url' });
// Config propagation between replicas (#17): a group's desired config in NATS JetStream.
const configSyncSchema = z.strictObject({
  nats: z.string().regex(/^(nats|tls):\/\/\S+$/, 'must be a nats:// or tls:// URL'),
  group: name.default(D.config_sync.group),
});
// The audit trail (#14): every admin change, durable. It lives in the state store when `state:` is
// configured (one store: SQLite embedded, PostgreSQL scaled); otherwise in a SQLite file of the
// gateway's own, `audit.sqlite`, relative to the config file (default var/audit.db). Its table has
// the state store's layout, so pointing `state.sqlite` at that file later keeps the history.
// The cost ledger (#15): totals per day, tenant, journey, model, class and experiment arm. In the
// state store when `state:` is configured (PostgreSQL: shared by replicas); otherwise in a SQLite
// file of the gateway's own, relative to the config file.
const costsSchema = z
  .strictObject({
    sqlite: z.string().min(1).default(D.costs.sqlite),
    /** How often recorded costs are written (batched) and budget totals re-read. */
    flush_ms: ms.default(D.costs.flush_ms),
    /** How long a request's feedback outcome is remembered (a repeat within it counts once). */
    outcome_retention_days: z.number().positive().default(D.costs.outcome_retention_days),
  })
  .prefault({});

const auditSchema = z
  .strictObject({ sqlite: z.string().min(1).default(D.audit.sqlite) })
  .prefault({});
// The inference log (#15): see docs/inference-log.md.
const DI = D.inference_log;
const inferenceLogSchema = z
  .strictObject({
    enabled: z.boolean().default(DI.enabled),
    store: z.enum(['sqlite', 'postgres']).default(DI.store),
    /** The SQLite file (relative to the config file). */
    path: z.string().min(1).default(DI.path),
    /** PostgreSQL: this URL, else the `state.postgres` one. */
    postgres: z.string().min(1).optional(),
    postgres_schema: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/)
      .default(DI.postgres_schema),
    buffer_size: posInt.default(DI.buffer_size),
    flush_ms: ms.default(DI.flush_ms),
    retention: z
      .strictObject({
        /** 0: no bound. */
        max_age_s: nonNegInt.default(DI.retention.max_age_s),
        max_rows: nonNegInt.default(DI.retention.max_rows),
        max_bytes: nonNegInt.default(0),
        interval_ms: ms.default(DI.retention.interval_ms),
      })
      .prefault({}),
    /** Per tenant: whether request and answer payloads are kept, for direct calls and by journey. */
    payloads: z
      .record(
        name,
        z.strictObject({
          direct: z.boolean().default(false),
          journeys: z.array(z.union([name, z.literal('*')])).default([]),
        }),
      )
      .default({}),
    /** An append-only JSONL copy of every batch written, rotated by size. */
    export: z
      .strictObject({
        jsonl: z.string().min(1).optional(),
        max_bytes: posInt.default(DI.export.max_bytes),
        keep: posInt.default(DI.export.keep),
      })
      .prefault({}),
  })
  .prefault({});

// Stored Responses (#16): in the state store when `state:` is configured, else in this SQLite file.
const responsesSchema = z
  .strictObject({
    sqlite: z.string().min(1).default(D.responses.sqlite),
    /** Retention: a stored response is gone this long after it was made. */
    ttl_s: posInt.default(D.responses.ttl_s),
    /** How often expired responses are deleted. */
    sweep_s: posInt.default(D.responses.sweep_s),
  })
  .prefault({});
const DB = D.batches;
/** Files and batches (#16). */
const batchesSchema = z
  .strictObject({
    /** Off: `/v1/files` and `/v1/batches` answer 404 and no batch runs. */
    enabled: z.boolean().default(DB.enabled),
    /** Without `state:`, files and batches live in this SQLite file (relative to the config). */
    sqlite: z.string().min(1).default(DB.sqlite),
    /** Largest file an upload may carry (413 past it). */
    max_file_bytes: posInt.default(DB.max_file_bytes),
    /**
     * Seconds after its creation a file expires when its upload (`expires_after`) or its batch
     * (`output_expires_after`) sets none; unset: kept until deleted. OpenAI's bounds.
     */
    file_expires_after_s: z.number().int().min(3_600).max(2_592_000).optional(),
    /** Most lines a batch's input file may have (the batch fails validation past it). */
    max_lines: posInt.default(DB.max_lines),
    /** Lines this gateway runs at once, all batches together. */
    concurrency: posInt.default(DB.concurrency),
    /** How often the runner looks for work (and for load to allow it). */
    poll_ms: posInt.default(DB.poll_ms),
    /** Slots of a model's concurrency gate a batch line must leave free for other traffic. */
    min_spare: nonNegInt.default(DB.min_spare),
  })
  .prefault({});
const DR = D.release;
const releaseSchema = z
  .strictObject({
    registry_dir: z.string().min(1).default(DR.registry_dir),
    /** Pinned Ed25519 public keys: a PEM string or a file (relative to the config). */
    signing_keys: z
      .array(
        z
          .strictObject({
            id: name,
            public_key: z.string().min(1).optional(),
            file: z.string().min(1).optional(),
          })
          .refine((k) => (k.public_key === undefined) !== (k.file === undefined), {
            message: 'give exactly one of public_key or file',
          }),
      )
      .default([]),
    evaluate_ms: posInt.default(DR.evaluate_ms),
    flush_ms: posInt.default(DR.flush_ms),
    poll_ms: nonNegInt.default(DR.poll_ms),
    /**
     * A canary whose ramp reached 100% and held there with its guardrails ok completes, and its
     * version is promoted to production in the registry (audited). Off: it stays at 100% until an
     * operator promotes it.
     */
    promote_on_complete: z.boolean().default(DR.promote_on_complete),
    feedback_ttl_s: posInt.default(DR.feedback_ttl_s),
    feedback_capacity: posInt.default(DR.feedback_capacity),
    exposure_wait_s: posInt.default(DR.exposure_wait_s),
    shadow: z
      .strictObject({
        max_in_flight: posInt.default(DR.shadow.max_in_flight),
        timeout_ms: posInt.default(DR.shadow.timeout_ms),
        max_lag_ms: nonNegInt.default(DR.shadow.max_lag_ms),
      })
      .prefault({}),
    layers: z.record(name, z.strictObject({ holdout: z.number().min(0).max(100) })).default({}),
  })
  .prefault({});
const pct = z.number().finite().min(0).max(100);
const variantSchema = z.strictObject({
  name,
  model: z.string().min(1),
  version: z.string().min(1).optional(),
  weight: z.number().finite().min(0).default(1),
});
export const experimentSchema = z.strictObject({
  id: name,
  slot: z.string().min(1).max(128),
  kind: z.enum(['ab', 'canary', 'bandit', 'shadow']),
  layer: name.default('default'),
  seed: z.string().min(1).max(128).optional(),
  traffic: pct.default(100),
  holdout: pct.default(0),
  eligibility: z
    .strictObject({
      geo: z.array(z.string()).optional(),
      device: z.array(z.string()).optional(),
      tenant: z.array(z.string()).optional(),
      class: z.array(z.string()).optional(),
      attributes: z
        .record(
          z.string().min(1).max(64),
          z.union([
            z.string(),
            z.number().finite(),
            z.boolean(),
            z.array(z.union([z.string(), z.number().finite(), z.boolean()])),
            z.strictObject({
              gte: z.number().finite().optional(),
              lte: z.number().finite().optional(),
            }),
          ]),
        )
        .optional(),
    })
    .optional(),
  variants: z.array(variantSchema).min(1).max(16),
  ramp: z
    .strictObject({ steps: z.array(pct).min(1).max(20), hold_s: z.number().finite().positive() })
    .optional(),
  rules: z
    .strictObject({
      p95_latency_ratio: z.number().finite().gt(1).optional(),
      p95_latency_min_delta_ms: z.number().finite().min(0).optional(),
      error_rate_delta: z.number().min(0).max(1).optional(),
      fallback_rate_delta: z.number().min(0).max(1).optional(),
      policy_exception_rate: z.number().min(0).max(1).optional(),
      shadow_disagreement: z.number().min(0).max(1).optional(),
      min_samples: posInt.default(100),
      window_s: z.number().finite().positive().default(60),
    })
    .optional(),
  bandit: z
    .strictObject({
      exploration_floor: z.number().min(0).max(1).default(0.01),
      segment_by: z.string().min(1).max(70).optional(),
    })
    .optional(),
  shadow: z
    .strictObject({
      percent: pct,
      targets: z
        .array(z.strictObject({ model: z.string().min(1), version: z.string().min(1).optional() }))
        .min(1),
    })
    .optional(),
  description: z.string().max(1000).optional(),
});

const vectorsSchema = z
  .strictObject({
    /** Directory (relative to the config) where local shards persist; absent: memory only. */
    data_dir: z.string().min(1).optional(),
    scan_workers: nonNegInt.max(64).default(D.vectors.scan_workers),
    view: z.boolean().default(D.vectors.view),
    remote_timeout_ms: ms.default(D.vectors.remote_timeout_ms),
    /**
     * Most vectors one tenant may hold in this node's shards (all collections). An upsert that
     * would pass it is refused whole with 429 SY_ERR_TENANT_STORAGE_FULL, through the collection
     * routes and the shard API alike; deletes, purges and expiry free room. Applies on reload
     * (unlike the collections, which need a restart).
     */
    max_per_tenant: posInt.default(D.vectors.max_per_tenant),
    collections: z.record(name, vectorCollectionSchema).default({}),
  })
  .prefault({})
  .superRefine((v, ctx) => {
    const seen = new Map<string, string>();
    for (const [c, col] of Object.entries(v.collections)) {
      col.shards.forEach((s, i) => {
        const other = seen.get(s.id);
        if (other !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['collections', c, 'shards', i, 'id'],
            message: `shard id "${s.id}" is already used by ${other} (ids are unique per node)`,
          });
        seen.set(s.id, `collections.${c}.shards[${i}]`);
      });
    }
  });

/** Traces (#15): OTLP/HTTP export of a span per handoff; see docs/observability.md#traces. */
const tracingSchema = z
  .strictObject({
    enabled: z.boolean().default(D.tracing.enabled),
    service_name: z.string().min(1).max(256).default(D.tracing.service_name),
    sample_ratio: z.number().finite().min(0).max(1).default(D.tracing.sample_ratio),
    otlp: z
      .strictObject({
        endpoint: httpUrl.default(D.tracing.otlp.endpoint),
        protocol: z.enum(['http/protobuf', 'http/json']).default(D.tracing.otlp.protocol),
        /** Sent with every export; a value may come from the environment or a file (a token). */
        headers: z
          .record(
            z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'an HTTP header name'),
            z.union([z.string(), secretRefSchema]),
          )
          .default({}),
        timeout_ms: ms.default(D.tracing.otlp.timeout_ms),
      })
      .prefault({}),
    export: z
      .strictObject({
        batch_size: posInt.default(D.tracing.export.batch_size),
        interval_ms: ms.default(D.tracing.export.interval_ms),
        max_queue: posInt.default(D.tracing.export.max_queue),
      })
      .prefault({})
      .refine((e) => e.batch_size <= e.max_queue, {
        message: 'batch_size must not exceed max_queue',
        path: ['batch_size'],
      }),
  })
  .prefault({});

export const configSchema = z
  .strictObject({
    server: serverSchema,
    log: z
      .strictObject({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default(D.log.level),
      })
      .prefault({}),
    auth: authSchema,
    onnx: z
      .strictObject({
        workers: nonNegInt.default(D.onnx.workers),
        intra_op_threads: posInt.default(D.onnx.intra_op_threads),
      })
      .prefault({}),
    /** This gateway in the tree (#17): where it runs and its role. */
    node: z
      .strictObject({
        region: name.default(D.node.region),
        /** Default jurisdiction of its models (else `privacy.node.jurisdiction`). */
        jurisdiction: name.optional(),
        role: z.enum(['edge', 'regional', 'central']).default(D.node.role),
        /** Edge nodes: the last answers of `backend: switchyard` models, for when the parent is gone. */
        stale_cache: z
          .strictObject({
            entries: nonNegInt.default(D.tree.stale_cache.entries),
            max_age_ms: ms.default(D.tree.stale_cache.max_age_ms),
          })
          .prefault({}),
      })
      .prefault({}),
    tenants: z.record(name, tenantSchema).default({}),
    models: z.record(name, modelSchema).default({}),
    journeys: z.record(name, journeySchema).default({}),
    features: z
      .strictObject({
        store: featureStoreSchema.default({
          kind: 'embedded',
          flush_ms: D.features.store.flush_ms,
        }),
        definitions: z.record(name, featureDefinitionSchema).default({}),
        /**
         * Most feature values one tenant may store (every entity and feature together). A push
         * that would pass it is refused whole with 429 SY_ERR_TENANT_STORAGE_FULL; purges,
         * expiry and consent revocations free room. Applies on reload.
         */
        max_values_per_tenant: posInt.default(D.features.max_values_per_tenant),
      })
      .prefault({}),
    privacy: privacySchema,
    classes: z
      .record(name, classSchema)
      .default(clone(D.classes))
      .refine((c) => Object.keys(c).length > 0, { message: 'declare at least one class' }),
    admission: admissionSchema,
    modes: modesSchema,
    vectors: vectorsSchema,
    state: stateSchema.optional(),
    cache: cacheSchema,
    config_sync: configSyncSchema.optional(),
    audit: auditSchema,
    inference_log: inferenceLogSchema,
    costs: costsSchema,
    responses: responsesSchema,
    batches: batchesSchema,
    release: releaseSchema,
    experiments: z.array(experimentSchema).default([]),
    tracing: tracingSchema,
  })
  .superRefine((cfg, ctx) => {
    checkAdmission(cfg, ctx);
    for (const [modelName, model] of Object.entries(cfg.models)) {
      model.fallback.forEach((target, i) => {
        if (!(target in cfg.models)) {
          ctx.addIssue({
            code: 'custom',
            path: ['models', modelName, 'fallback', i],
            message: `unknown model "${target}"`,
          });
        } else if (target === modelName) {
          ctx.addIssue({
            code: 'custom',
            path: ['models', modelName, 'fallback', i],
            message: 'a model cannot fall back to itself',
          });
        }
      });
    }
    const seen = new Map<string, string>();
    for (const [tenantName, tenant] of Object.entries(cfg.tenants)) {
      tenant.keys.forEach((key, i) => {
        const other = seen.get(key.hash);
        if (other !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['tenants', tenantName, 'keys', i, 'hash'],
            message: `the same key is already listed under ${other}`,
          });
        }
        seen.set(key.hash, `tenants.${tenantName}.keys[${i}]`);
      });
      tenant.models.forEach((pattern, i) => {
        const journey = pattern.startsWith('journey:') ? pattern.slice(8) : undefined;
        if (
          journey !== undefined
            ? !(journey in cfg.journeys)
            : !pattern.endsWith('*') && !(pattern in cfg.models)
        ) {
          ctx.addIssue({
            code: 'custom',
            path: ['tenants', tenantName, 'models', i],
            message: `unknown model "${pattern}"`,
          });
        }
      });
    }
    for (const [journeyName, journey] of Object.entries(cfg.journeys)) {
      if (!(journey.class in cfg.classes))
        ctx.addIssue({
          code: 'custom',
          path: ['journeys', journeyName, 'class'],
          message: `unknown class "${journey.class}"`,
        });
    }
    const hasKeys = Object.values(cfg.tenants).some((t) => t.keys.length > 0);
    if (hasKeys && cfg.auth.secret === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['auth', 'secret'],
        message: 'tenants have keys, so auth.secret (env or file) is required',
      });
    }
    checkInferenceLog(cfg, ctx);
    const anon = cfg.auth.anonymous_tenant;
    if (anon !== undefined && !(anon in cfg.tenants)) {
      ctx.addIssue({
        code: 'custom',
        path: ['auth', 'anonymous_tenant'],
        message: `unknown tenant "${anon}"`,
      });
    }
  });

/** Payload rules name declared tenants and journeys; PostgreSQL needs a URL. */
function checkInferenceLog(
  cfg: {
    tenants: Record<string, unknown>;
    journeys: Record<string, unknown>;
    state?: { sqlite: string } | { postgres: string } | undefined;
    inference_log: z.output<typeof inferenceLogSchema>;
  },
  ctx: z.RefinementCtx,
): void {
  const il = cfg.inference_log;
  for (const [tenant, rule] of Object.entries(il.payloads)) {
    if (!(tenant in cfg.tenants))
      ctx.addIssue({
        code: 'custom',
        path: ['inference_log', 'payloads', tenant],
        message: `unknown tenant "${tenant}"`,
      });
    rule.journeys.forEach((j, i) => {
      if (j !== '*' && !(j in cfg.journeys))
        ctx.addIssue({
          code: 'custom',
          path: ['inference_log', 'payloads', tenant, 'journeys', i],
          message: `unknown journey "${j}"`,
        });
    });
  }
  const statePg = cfg.state !== undefined && 'postgres' in cfg.state;
  if (il.store === 'postgres' && il.postgres === undefined && !statePg)
    ctx.addIssue({
      code: 'custom',
      path: ['inference_log', 'postgres'],
      message: 'store: postgres needs inference_log.postgres or state.postgres',
    });
}

/** Every class named anywhere must be declared under `classes`. */
function checkAdmission(
  cfg: {
    classes: Record<string, unknown>;
    admission: { default_class: string };
    tenants: Record<
      string,
      {
        max_class?: string | undefined;
        classes?: string[] | undefined;
        default_class?: string | undefined;
      }
    >;
    modes: {
      surge: { switches: { shed_classes: string[] } };
      emergency: { switches: { shed_classes: string[] } };
    };
  },
  ctx: z.RefinementCtx,
): void {
  const check = (value: string | undefined, path: (string | number)[]): void => {
    if (value !== undefined && !(value in cfg.classes))
      ctx.addIssue({ code: 'custom', path, message: `unknown class "${value}"` });
  };
  check(cfg.admission.default_class, ['admission', 'default_class']);
  for (const m of ['surge', 'emergency'] as const)
    cfg.modes[m].switches.shed_classes.forEach((c, i) =>
      check(c, ['modes', m, 'switches', 'shed_classes', i]),
    );
  for (const [t, tenant] of Object.entries(cfg.tenants)) {
    check(tenant.max_class, ['tenants', t, 'max_class']);
    check(tenant.default_class, ['tenants', t, 'default_class']);
    tenant.classes?.forEach((c, i) => check(c, ['tenants', t, 'classes', i]));
  }
}

export type Config = z.output<typeof configSchema>;
export type ModelConfig = z.output<typeof modelSchema>;
export type HttpModelConfig = Exclude<ModelConfig, { backend: 'onnx' }>;
export type OnnxModelConfig = Extract<ModelConfig, { backend: 'onnx' }>;
export type TenantConfig = z.output<typeof tenantSchema>;
export type RetryConfig = z.output<typeof retrySchema>;
export type BreakerConfig = z.output<typeof breakerSchema>;
export type FeatureDefinitionConfig = z.output<typeof featureDefinitionSchema>;
export type FeatureStoreConfig = z.output<typeof featureStoreSchema>;
export type PrivacyConfig = z.output<typeof privacySchema>;
export type ReleaseConfig = z.output<typeof releaseSchema>;
export type StateConfig = z.output<typeof stateSchema>;
export type ConfigSyncConfig = z.output<typeof configSyncSchema>;
export type InferenceLogConfig = z.output<typeof inferenceLogSchema>;
export type ExperimentConfig = z.output<typeof experimentSchema>;
export type TracingConfig = z.output<typeof tracingSchema>;
