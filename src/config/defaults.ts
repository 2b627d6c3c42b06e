/**
 * Every default of the configuration, in one place. The schema refers to these values; nothing
 * else in the code base invents a default for a configurable setting.
 */
export const DEFAULTS = {
  server: {
    host: '127.0.0.1',
    port: 8080,
    limits: {
      body_bytes: 1_048_576,
      /**
       * Cap on a multipart upload streamed to an upstream (`POST /v1/audio/transcriptions`,
       * #16 part 4): OpenAI's own 25 MB audio limit. JSON bodies keep `body_bytes`.
       */
      upload_bytes: 26_214_400,
      header_bytes: 16_384,
      /** Slowloris guard: the whole header block must arrive within this time. */
      headers_timeout_ms: 5_000,
      /** The whole request (headers and body) must arrive within this time. */
      request_timeout_ms: 30_000,
      keep_alive_timeout_ms: 5_000,
      /** How often Node checks the two timeouts above (its default of 30 s lets slow clients live). */
      timeout_check_interval_ms: 1_000,
      max_connections: 10_000,
      /**
       * After an answer sent before the body was read (413, 401, ...), the rest of the upload is
       * read and thrown away, up to this many bytes and this long, so the client reads the answer
       * instead of a reset (nginx's lingering close). 0 bytes: close at once.
       */
      linger_bytes: 16_777_216,
      linger_ms: 5_000,
    },
    deadline: {
      /** Budget when the client sends no `x-switchyard-timeout-ms` header. */
      default_ms: 30_000,
      /** A client budget is clamped into [min_ms, max_ms]. */
      min_ms: 1,
      max_ms: 300_000,
    },
    /**
     * A stream, once its first event went out, is bounded by these instead of the deadline (#16):
     * the wait between events and the whole life. A client may ask for others up to the caps
     * (`x-switchyard-stream-idle-ms`, `x-switchyard-stream-max-ms`).
     */
    /** The KServe v2 gRPC service (#16), off unless enabled; its host defaults to server.host. */
    grpc: { enabled: false, port: 8081 },
    stream: {
      idle_timeout_ms: 30_000,
      idle_timeout_cap_ms: 300_000,
      duration_ms: 600_000,
      duration_cap_ms: 3_600_000,
    },
    /** How long a config reload waits for in-flight requests before closing old connections. */
    drain_ms: 30_000,
    /**
     * `switchyard serve` only, read at start: how far the old generation may grow past the live
     * heap before a full GC, in percent (0: V8's own rule, up to 4x). See src/core/heap.ts.
     */
    heap_growing_percent: 20,
    /**
     * `switchyard serve` only, read at start: worker processes serving this port (#17); `auto` is
     * one per core. `--workers` overrides it.
     */
    workers: 1 as number | 'auto',
  },
  log: { level: 'info' as const },
  /** `backend: anthropic` models (#16). */
  anthropicModel: {
    /** The Messages API version every current Anthropic model serves. */
    anthropic_version: '2023-06-01',
    /** max_tokens sent for a chat request that sets none (the Messages API requires one). */
    default_max_tokens: 4096,
  },
  model: {
    tier: 'central' as const,
    timeout_ms: 120_000,
    /**
     * A third of the default deadline (#13 finding 3: at 30 s, equal to the deadline, a black-
     * holed upstream ran every request into a 504). Non-streamed answers come whole, so raise it
     * for models that take longer than this to write one.
     */
    first_byte_timeout_ms: 10_000,
    /** With a fallback after the model, its attempt gets at most this share of the deadline left. */
    first_byte_share: 0.5,
    max_response_bytes: 16_777_216,
    pool: { connections: 128, keep_alive_ms: 30_000 },
    retry: {
      max_attempts: 3,
      base_delay_ms: 20,
      max_delay_ms: 500,
      /** Retry budget (gRPC-style throttling): each answered attempt earns this many tokens... */
      budget_ratio: 0.1,
      /** ...each failed one costs one, and retries stop at half of this many (one per upstream). */
      budget_tokens: 10,
    },
    breaker: {
      /** The breaker opens when, within the window, this many calls were made... */
      min_calls: 10,
      /** ...and at least this share of them failed, */
      failure_ratio: 0.5,
      /** or on this many consecutive failures, whichever comes first. */
      consecutive_failures: 5,
      window_ms: 10_000,
      /** Open this long before letting probes through (half-open). */
      cooldown_ms: 5_000,
      /** Probes allowed at once while half-open; this many successes close it. */
      half_open_probes: 1,
    },
  },
  // The gateway tree (#17).
  node: { region: 'default', role: 'central' as const },
  switchyardModel: {
    /** A tenant assertion lives this long past the call's deadline (clock skew between nodes). */
    assertion_ttl_ms: 5_000,
  },
  tree: {
    /** A parent gateway accepts tenant assertions that expire at most this far ahead. */
    assertion_max_ttl_ms: 300_000,
    /** Edge nodes keep the last answers of their parent for when it cannot be reached. */
    stale_cache: { entries: 10_000, max_age_ms: 600_000 },
  },
  onnx: {
    /** Inference worker threads (each holds a session of every loaded version). 0 = cores - 1, at least 1. */
    workers: 0,
    /** ONNX Runtime intra-op threads per session; 1 is fastest for small models (TOOLCHAIN.md). */
    intra_op_threads: 1,
  },
  onnxModel: {
    tier: 'edge' as const,
    version_policy: { latest: 1 },
    batch: { max: 32, delay_us: 2_000, preferred: [] as number[], queue: 4_096 },
    allow_non_finite: false,
    watch: true,
  },
  // Feature store, consent, policy labels and residency (#7).
  features: {
    /** The embedded store writes behind to SQLite at most this often. */
    store: { flush_ms: 50 },
    redis_prefix: 'sy:feat:',
    /** TOOLCHAIN.md: a short command timeout so a Redis outage is an error, not a hang. */
    redis_command_timeout_ms: 50,
    /**
     * The local cache of a Redis store (`features.store.cache`, #17): fresh for a second, served
     * stale up to five minutes while Redis is away. `restricted` values are never copied into it.
     */
    cache: {
      ttl_ms: 1_000,
      stale_ms: 300_000,
      max_entries: 100_000,
      labels: ['public', 'consented', 'sensitive'] as const,
    },
    /**
     * Most feature values one tenant may store (issue #13, finding 8). An in-process value costs
     * roughly 0.3 KB, so the default bounds one tenant near 75 MB of the gateway's heap.
     */
    max_values_per_tenant: 250_000,
  },
  // Admission control (#5): traffic classes, concurrency, quotas' limiter, modes.
  classes: {
    interactive: {
      priority: 0,
      deadline_ms: 30_000,
      queue_timeout_ms: 1_000,
      shed_from: 20,
      shed_full: 40,
    },
    personalization: {
      priority: 1,
      deadline_ms: 5_000,
      queue_timeout_ms: 250,
      shed_from: 1,
      shed_full: 3,
    },
    background: {
      priority: 3,
      deadline_ms: 120_000,
      queue_timeout_ms: 20,
      shed_from: 0.4,
      shed_full: 1.2,
    },
    batch: {
      priority: 4,
      deadline_ms: 300_000,
      queue_timeout_ms: 20,
      shed_from: 0.2,
      shed_full: 0.8,
    },
  },
  /** Fields a class declared in the config may leave out. */
  class: { deadline_ms: 30_000, queue_timeout_ms: 250, shed_from: 0.5, shed_full: 1 },
  /** Journeys (#4): the traffic class of a journey that names none. */
  journey: { class: 'interactive' },
  admission: {
    enabled: true,
    default_class: 'interactive',
    shed_retry_after_s: 1,
    concurrency: {
      algorithm: 'vegas' as const,
      /** Netflix concurrency-limits' Vegas default; probing finds the upstream's real limit. */
      initial_limit: 20,
      min_limit: 1,
      max_limit: 1_000,
      max_queue: 1_000,
      /** A typical queue wait this long counts as full pressure on the shed curve. */
      target_queue_delay_ms: 50,
      probe_interval_ms: 5_000,
      smoothing: 0.2,
    },
    /** Output tokens reserved for a chat request that sets no max_tokens. */
    estimate: { output_tokens: 256 },
    /** Sustained event-loop lateness at which CPU pressure starts (1 on the classes' curves). */
    overload: { loop_delay_ms: 100 },
    limiter: {
      store: 'memory' as const,
      prefix: 'sy:quota:',
      /** TOOLCHAIN.md: a short command timeout so a Redis outage is a fallback, not a hang. */
      command_timeout_ms: 50,
      probe_ms: 250,
      local_share: 1,
    },
  },
  modes: {
    sample_ms: 1_000,
    enter_samples: 3,
    exit_samples: 10,
    min_hold_ms: 30_000,
    surge: {
      enter: { queue_delay_ms: 50, error_rate: 0.25 },
      exit: { queue_delay_ms: 10, error_rate: 0.05 },
      switches: {
        deadline_scale: 0.75,
        shed_classes: ['batch'],
        shed_boost: 0.2,
        batch_delay_scale: 2,
        cache_ttl_scale: 2,
      },
    },
    emergency: {
      enter: { queue_delay_ms: 250, error_rate: 0.5 },
      exit: { queue_delay_ms: 50, error_rate: 0.2 },
      switches: {
        deadline_scale: 0.5,
        shed_classes: ['batch', 'background'],
        shed_boost: 0.5,
        batch_delay_scale: 4,
        cache_ttl_scale: 4,
      },
    },
  },
  privacy: {
    node: { id: 'local' },
    consent_redis_prefix: 'sy:consent:',
    /**
     * Most consent records (users with a written record) per tenant (issue #13, finding 8). Every
     * record is held in memory (~0.3 KB): the default bounds one tenant near 300 MB. Revocations
     * are never refused.
     */
    max_consent_records_per_tenant: 1_000_000,
    /** What each label allows at each enforcement point (`consent`: if the purpose is granted). */
    labels: {
      public: { ingestion: 'allow', retrieval: 'allow', model_input: 'allow', logging: 'allow' },
      consented: {
        ingestion: 'consent',
        retrieval: 'consent',
        model_input: 'consent',
        logging: 'consent',
      },
      sensitive: {
        ingestion: 'consent',
        retrieval: 'consent',
        model_input: 'consent',
        logging: 'deny',
      },
      restricted: {
        ingestion: 'consent',
        retrieval: 'consent',
        model_input: 'deny',
        logging: 'deny',
      },
    },
  },
  /** Vector retrieval (#7): collections of sharded HNSW indexes. */
  vectors: {
    /** Worker threads for heavy exact scans (wide filters, recall probes); 0: scan inline. */
    scan_workers: 1,
    /** Reopen persisted HNSW files memory-mapped (instant); the first write loads them into RAM. */
    view: true,
    remote_timeout_ms: 2_000,
    /**
     * Most vectors one tenant may hold in this node's shards, all collections together (issue #13,
     * finding 8). A 128-d vector with its metadata and HNSW links costs roughly 1 KB.
     */
    max_per_tenant: 100_000,
    metric: 'cos' as const,
    index: 'hnsw' as const,
    hnsw: {
      connectivity: 16,
      expansion_add: 128,
      expansion_search: 64,
      quantization: 'f32' as const,
    },
  },
  /**
   * The audit trail of admin changes (#14). Without `state:`, the gateway keeps it in this SQLite
   * file of its own (relative to the config file); with `state:`, in the state store.
   */
  audit: { sqlite: 'var/audit.db' },
  /** Config propagation (#17): replicas that name the same group share their config. */
  config_sync: { group: 'default' },
  /** The journeys' response cache (#17); Redis commands give up fast and count as a miss. */
  cache: { store: 'memory' as const, prefix: 'sy:cache:', command_timeout_ms: 50 },
  /**
   * The inference log (#15): one record per request and per model call, written behind the
   * request by a batch writer. Off by default; the embedded store is a SQLite file of its own.
   */
  inference_log: {
    enabled: false,
    store: 'sqlite' as const,
    path: 'var/inference.db',
    postgres_schema: 'switchyard',
    /** Records (requests and calls) held between flushes; past it, new ones are dropped and counted. */
    buffer_size: 50_000,
    flush_ms: 1_000,
    retention: { max_age_s: 7 * 86_400, max_rows: 1_000_000, interval_ms: 60_000 },
    export: { max_bytes: 64 * 1024 * 1024, keep: 5 },
  },
  /** The cost ledger (#15): its own SQLite file without `state:`, and its flush interval. */
  costs: { sqlite: 'var/costs.db', flush_ms: 1_000, outcome_retention_days: 30 },
  /**
   * Traces (#15): OpenTelemetry spans of every handoff, exported over OTLP/HTTP behind a batch
   * processor (never on the request path). Off by default: no span objects are made then.
   */
  tracing: {
    enabled: false,
    service_name: 'switchyard',
    /** Head sampling of new traces (parent-based: a client's sampled flag is followed). */
    sample_ratio: 1,
    otlp: {
      endpoint: 'http://127.0.0.1:4318/v1/traces',
      protocol: 'http/protobuf' as const,
      timeout_ms: 10_000,
    },
    /**
     * 128 spans per export, not OpenTelemetry's 512: a full batch is sent at once, so under load
     * a span waits for its export a quarter as long and mostly dies in V8's young generation.
     * At 1,000 req/s with sampler 1.0 that cut the gateway's scavenge time by ~40% (~3.3 to ~1.8
     * ms per scavenge, `--trace-gc`), for ~8 more small exports a second.
     */
    export: { batch_size: 128, interval_ms: 5_000, max_queue: 2_048 },
  },
  /** Stored Responses (#16): retention 30 days, as OpenAI keeps them. */
  responses: { sqlite: 'var/responses.db', ttl_s: 2_592_000, sweep_s: 60 },
  /**
   * Files and batches (#16): OpenAI's limits (200 MB, 50,000 lines) lowered for an embedded
   * gateway that keeps each input file in its state store. The runner keeps a few lines in flight
   * and leaves at least one slot of a model's concurrency gate to other traffic.
   */
  batches: {
    enabled: true,
    sqlite: 'var/batches.db',
    max_file_bytes: 50 * 1_048_576,
    max_lines: 50_000,
    concurrency: 4,
    poll_ms: 1_000,
    min_spare: 1,
  },
  /** Release management (#6): registry, experiments, rollback loop. */
  release: {
    registry_dir: 'registry',
    evaluate_ms: 1_000,
    flush_ms: 1_000,
    /** How often the state store is polled for changes made elsewhere (CLI, other replicas). */
    poll_ms: 2_000,
    promote_on_complete: true,
    feedback_ttl_s: 86_400,
    feedback_capacity: 200_000,
    exposure_wait_s: 300,
    shadow: { max_in_flight: 64, timeout_ms: 2_000, max_lag_ms: 20 },
  },
} as const;
