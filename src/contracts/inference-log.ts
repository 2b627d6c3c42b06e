import type { JsonValue } from './json.js';

/** One stage of a journey's route as the log keeps it (#15): what ran, how it ended, and why. */
export interface StageRecord {
  readonly stage: string;
  readonly kind: string;
  readonly outcome: string;
  readonly code: string;
  readonly reason: string;
  readonly ms: number;
  readonly model?: string;
  readonly version?: string;
  readonly tier?: string;
}

/**
 * A feature a request read: its name and version, and its value only where its policy label
 * allows logging (`privacy.labels.<label>.logging`, consent included).
 */
export interface FeatureRead {
  readonly name: string;
  /** The entity it was read for (an item, the user). */
  readonly entity: string;
  readonly version: number;
  readonly label: string;
  readonly value?: JsonValue;
}

/** A vector shard a retrieval asked, and how it answered (`ok`, or why not). */
export interface ShardHit {
  readonly collection: string;
  readonly shard: string;
  /** The node that holds it (`local`, or a remote shard's). */
  readonly node: string;
  readonly hits: number;
  readonly outcome: string;
}

/** What a request's stages read, for its record: features and shards. */
export interface RecordReads {
  readonly features: readonly FeatureRead[];
  readonly shards: readonly ShardHit[];
}

/** One model call inside a request (a direct call, a journey stage, a shadow copy, a replay). */
export interface ModelCallRecord {
  /** The request it belongs to (a shadow copy's is its live request's). */
  readonly requestId: string;
  /** Epoch ms (wall clock) when the call ended. */
  readonly at: number;
  readonly origin: string;
  readonly tenant: string;
  readonly user?: string;
  readonly trafficClass: string;
  readonly op: string;
  readonly requested: string;
  readonly model: string;
  readonly servedBy: string;
  readonly version: string;
  readonly tier: string;
  readonly reason: string;
  readonly experiment?: string;
  readonly variant?: string;
  readonly stream: boolean;
  readonly ms: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** The tokens were counted by the gateway's tokenizer: the upstream reported no usage (#15). */
  readonly tokensEstimated?: true;
  readonly cost: number;
  /** `ok`, or the error code. */
  readonly outcome: string;
  readonly attempts: string;
  readonly withheld: number;
  readonly traceId?: string;
}

/** What a request sent and what it answered, redacted by the privacy policy before it is kept. */
export interface StoredPayload {
  readonly request?: JsonValue;
  readonly response?: JsonValue;
}

/** One request as the inference log keeps it (#15). */
export interface RequestRecord {
  /** The request id (`x-request-id`): the record's id. */
  readonly id: string;
  /** Epoch ms (wall clock) when the request ended. */
  readonly at: number;
  readonly tenant: string;
  /** The data subject (`x-switchyard-user`, the OpenAI `user` field, a journey's `user` attribute). */
  readonly user?: string;
  readonly trafficClass: string;
  readonly method: string;
  /** The route pattern, such as `/v1/chat/completions`. */
  readonly route: string;
  /** The model (or `journey:<name>`) the request resolved to; '' when none. */
  readonly model: string;
  readonly journey?: string;
  readonly status: number;
  /** `ok`, or the error code. */
  readonly outcome: string;
  readonly durationMs: number;
  readonly stream: boolean;
  /** The compact route (`x-switchyard-route`). */
  readonly path: string;
  /** Journeys: every stage's outcome and reason, in order. */
  readonly stages?: readonly StageRecord[];
  readonly decisions?: readonly string[];
  /** Model versions used, `model@version`, in call order (deduplicated). */
  readonly versions: readonly string[];
  /** Experiment assignments, `experiment/variant`. */
  readonly experiments: readonly string[];
  /** Journeys: the features their stages read, and the vector shards their retrievals asked. */
  readonly features?: readonly FeatureRead[];
  readonly shards?: readonly ShardHit[];
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Some of the tokens were counted by the gateway's tokenizer (a call's upstream reported none). */
  readonly tokensEstimated?: true;
  readonly cost: number;
  readonly traceId?: string;
  readonly payload?: StoredPayload;
}

/** A request record with its model-call records, as `get` answers. */
export interface RequestDetail extends RequestRecord {
  readonly calls: readonly ModelCallRecord[];
}

/** A page of records, newest first. */
export interface RequestPage {
  readonly records: readonly RequestRecord[];
  /** Pass as `cursor` for the next (older) page; absent on the last page. */
  readonly nextCursor?: string;
}

/** Which records to list. Every present field must match. */
export interface InferenceQuery {
  readonly tenant?: string;
  readonly journey?: string;
  /** The request's model, or a model any of its calls resolved to or was served by. */
  readonly model?: string;
  /** `ok`, or an error code. */
  readonly outcome?: string;
  /** Epoch ms, inclusive. */
  readonly since?: number;
  readonly until?: number;
  readonly traceId?: string;
  readonly requestId?: string;
  readonly user?: string;
  /** Only records that kept a payload (replay's input). */
  readonly withPayload?: boolean;
  /** An opaque cursor from a previous page. */
  readonly cursor?: string;
  /** At most this many (default 100, clamped to [1, 1000]). */
  readonly limit?: number;
}

/** Retention: what to keep. Absent bounds do not apply. */
export interface RetentionRule {
  /** Records older than this (relative to `now`) are deleted. */
  readonly maxAgeMs?: number;
  /** At most this many request records, newest kept. */
  readonly maxRows?: number;
  /** At most this many bytes of serialized request records, newest kept. */
  readonly maxBytes?: number;
  /** Epoch ms. */
  readonly now: number;
}

/**
 * The inference log's store (#15): SQLite (embedded, WAL) and PostgreSQL (scaled). Written only by
 * the recorder's batch writer, never from a request's path. All pass
 * `test/contract/inference-log.contract.ts`.
 */
export interface InferenceLogStore {
  /** Appends a batch in one transaction; resolves once it is durable. */
  append(requests: readonly RequestRecord[], calls: readonly ModelCallRecord[]): Promise<void>;
  query(q?: InferenceQuery): Promise<RequestPage>;
  /** A request with its model calls, or undefined. */
  get(id: string): Promise<RequestDetail | undefined>;
  /** Deletes every record (requests and calls) of one user of one tenant; resolves with the count. */
  purgeUser(tenant: string, user: string): Promise<number>;
  /** Applies a retention rule; resolves with the request records deleted. */
  retain(rule: RetentionRule): Promise<number>;
  close(): Promise<void>;
}

/** What the admin API and the CLI read: the store's queries, after the buffer is written. */
export interface InferenceLogReader {
  query(q?: InferenceQuery): Promise<RequestPage>;
  get(id: string): Promise<RequestDetail | undefined>;
}
