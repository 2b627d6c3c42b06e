import type {
  InferenceLogReader,
  InferenceLogStore,
  InferenceQuery,
  ModelCallRecord,
  RequestDetail,
  RequestPage,
  RequestRecord,
  StageRecord,
} from '../contracts/inference-log.js';
import type { JsonValue } from '../contracts/json.js';
import type { Logger } from '../contracts/logger.js';
import type { Clock } from '../core/clock.js';
import { events, subscribe, type ModelCallEvent, type RequestDoneEvent } from '../core/events.js';

export interface RecorderRetention {
  readonly maxAgeMs?: number;
  readonly maxRows?: number;
  readonly maxBytes?: number;
  /** How often retention runs (ms). */
  readonly intervalMs: number;
}

export type DropReason = 'overflow' | 'write_failed';

export interface InferenceRecorderOptions {
  readonly store: InferenceLogStore;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Most records (requests and calls) held between flushes; past it, new records are dropped. */
  readonly bufferSize: number;
  readonly flushMs: number;
  readonly retention?: RecorderRetention | undefined;
  /** Called for every batch written, after the store took it (the JSONL export). */
  readonly exported?: (
    requests: readonly RequestRecord[],
    calls: readonly ModelCallRecord[],
  ) => void;
  readonly onDropped?: (reason: DropReason, n: number) => void;
  readonly onWritten?: (kind: 'request' | 'call', n: number) => void;
}

/** What a request's model calls added up to, kept until the request's own record is built. */
interface Tally {
  inputTokens: number;
  outputTokens: number;
  cost: number;
  estimated: boolean;
  readonly versions: Set<string>;
  readonly experiments: Set<string>;
}

/** Requests whose calls are tallied at once; past it the oldest tally is forgotten. */
const MAX_TALLIES = 10_000;
/**
 * Records held before they are written without waiting for `flush_ms` (at most this many per write
 * transaction). Under load a record then waits tens of ms, not up to a second. Held for a second,
 * records outlive V8's young generation (as spans did before `tracing.batch_size`); bench:record
 * measured the log's event-loop CPU per request and its steady-load loop delay falling when they
 * stopped waiting (docs/inference-log.md). A transaction's fixed cost is small against 128 rows.
 */
const WRITE_BATCH = 128;

/**
 * The inference log's recorder (#15): subscribes to `requestDone` and `modelCall`, builds one
 * record per request and one per model call, and holds them in a bounded buffer that a timer
 * writes to the store in batches. A request never waits for it: building a record is a few object
 * copies, and a full buffer drops the record and counts it. `close()` writes everything held.
 */
export class InferenceRecorder implements InferenceLogReader {
  private requests: RequestRecord[] = [];
  private calls: ModelCallRecord[] = [];
  private readonly tallies = new Map<string, Tally>();
  private writing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private retainTimer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: (() => void)[] = [];
  private closed = false;
  /** Records of batches handed to the store and not yet written (they count against the bound). */
  private queued = 0;

  constructor(private readonly o: InferenceRecorderOptions) {}

  /** Subscribes and starts the flush (and retention) timers. */
  start(): this {
    this.unsubscribe.push(
      subscribe(events.modelCall, (e) => this.onModelCall(e)),
      subscribe(events.requestDone, (e) => this.onRequestDone(e)),
    );
    this.timer = setInterval(() => void this.flush(), this.o.flushMs);
    this.timer.unref();
    const r = this.o.retention;
    if (
      r !== undefined &&
      (r.maxAgeMs !== undefined || r.maxRows !== undefined || r.maxBytes !== undefined)
    ) {
      this.retainTimer = setInterval(() => void this.retain(), r.intervalMs);
      this.retainTimer.unref();
    }
    return this;
  }

  /** Records in the buffer and in batches handed to the store and not yet written. */
  get buffered(): number {
    return this.requests.length + this.calls.length + this.queued;
  }

  private room(): boolean {
    if (this.buffered < this.o.bufferSize) return true;
    this.o.onDropped?.('overflow', 1);
    return false;
  }

  private onModelCall(e: ModelCallEvent): void {
    if (this.closed || e.unlogged === true) return;
    // A shadow copy's request id is its live request's with a suffix: it files under that request.
    const suffix = e.requestId.indexOf(':');
    const requestId = suffix < 0 ? e.requestId : e.requestId.slice(0, suffix);
    if (e.origin !== 'shadow' && e.origin !== 'replay') this.tally(requestId, e);
    if (!this.room()) return;
    this.calls.push({
      requestId,
      at: this.o.clock.wall(),
      origin: e.origin,
      tenant: e.tenant,
      ...(e.user === undefined ? {} : { user: e.user }),
      trafficClass: e.trafficClass,
      op: e.op,
      requested: e.requested,
      model: e.model,
      servedBy: e.servedBy,
      version: e.version,
      tier: e.tier,
      reason: e.reason,
      ...(e.experiment === undefined ? {} : { experiment: e.experiment }),
      ...(e.variant === undefined ? {} : { variant: e.variant }),
      stream: e.stream,
      ms: e.ms,
      inputTokens: e.inputTokens,
      outputTokens: e.outputTokens,
      ...(e.estimated ? { tokensEstimated: true as const } : {}),
      cost: e.cost,
      outcome: e.outcome,
      attempts: e.attempts,
      withheld: e.withheld,
      ...(e.traceId === undefined ? {} : { traceId: e.traceId }),
    });
    if (this.requests.length + this.calls.length >= WRITE_BATCH) void this.flush();
  }

  private tally(requestId: string, e: ModelCallEvent): void {
    let t = this.tallies.get(requestId);
    if (t === undefined) {
      if (this.tallies.size >= MAX_TALLIES) {
        const oldest = this.tallies.keys().next();
        if (oldest.done !== true) this.tallies.delete(oldest.value);
      }
      t = {
        inputTokens: 0,
        outputTokens: 0,
        cost: 0,
        estimated: false,
        versions: new Set(),
        experiments: new Set(),
      };
      this.tallies.set(requestId, t);
    }
    t.inputTokens += e.inputTokens;
    t.outputTokens += e.outputTokens;
    t.cost += e.cost;
    if (e.estimated) t.estimated = true;
    t.versions.add(`${e.servedBy}@${e.version}`);
    if (e.experiment !== undefined) t.experiments.add(`${e.experiment}/${e.variant ?? ''}`);
  }

  private onRequestDone(e: RequestDoneEvent): void {
    const t = this.tallies.get(e.requestId);
    this.tallies.delete(e.requestId);
    // Inference requests only: a POST that named a model or a journey (not admin or data routes).
    if (this.closed || e.method !== 'POST' || e.model === '') return;
    if (!this.room()) return;
    const route = e.journeyRoute as JourneyRouteJson | undefined;
    const stages = route === undefined ? undefined : flattenStages(route.stages ?? []);
    const versions = new Set(t?.versions);
    for (const s of stages ?? [])
      if (s.model !== undefined && s.version !== undefined) versions.add(`${s.model}@${s.version}`);
    this.requests.push({
      id: e.requestId,
      at: this.o.clock.wall(),
      tenant: e.tenant,
      ...(e.user === undefined ? {} : { user: e.user }),
      trafficClass: e.trafficClass,
      method: e.method,
      route: e.route,
      model: e.model,
      ...(e.journey === undefined ? {} : { journey: e.journey }),
      status: e.status,
      outcome: e.code ?? (e.status < 400 ? 'ok' : `HTTP_${e.status}`),
      durationMs: e.durationMs,
      stream: e.stream,
      path: e.path,
      ...(stages === undefined ? {} : { stages }),
      ...(route?.decisions === undefined ? {} : { decisions: route.decisions }),
      ...(e.reads === undefined || e.reads.features.length === 0
        ? {}
        : { features: e.reads.features }),
      ...(e.reads === undefined || e.reads.shards.length === 0 ? {} : { shards: e.reads.shards }),
      versions: [...versions],
      experiments: [...(t?.experiments ?? [])],
      inputTokens: t?.inputTokens ?? 0,
      outputTokens: t?.outputTokens ?? 0,
      ...(t?.estimated === true ? { tokensEstimated: true as const } : {}),
      cost: t?.cost ?? 0,
      ...(e.traceId === undefined ? {} : { traceId: e.traceId }),
      ...(e.payload === undefined
        ? {}
        : {
            payload: {
              ...(e.payload.request === undefined
                ? {}
                : { request: e.payload.request as JsonValue }),
              ...(e.payload.response === undefined
                ? {}
                : { response: e.payload.response as JsonValue }),
            },
          }),
    });
    if (this.requests.length + this.calls.length >= WRITE_BATCH) void this.flush();
  }

  /**
   * Writes everything held now; resolves once it is in the store (or failed and was counted).
   * Writes are serialized: a flush waits for the one before it.
   */
  flush(): Promise<void> {
    const requests = this.requests;
    const calls = this.calls;
    if (requests.length === 0 && calls.length === 0) return this.writing;
    this.requests = [];
    this.calls = [];
    const n = requests.length + calls.length;
    this.queued += n;
    // At most WRITE_BATCH records: a batch is written as soon as it is full.
    const write = async (): Promise<void> => {
      try {
        await this.o.store.append(requests, calls);
        this.o.onWritten?.('request', requests.length);
        this.o.onWritten?.('call', calls.length);
        this.o.exported?.(requests, calls);
      } catch (err) {
        this.o.onDropped?.('write_failed', requests.length + calls.length);
        this.o.logger.warn(
          { err, records: requests.length + calls.length },
          'inference log: a batch could not be written and was dropped',
        );
      } finally {
        this.queued -= n;
      }
    };
    this.writing = this.writing.then(write);
    return this.writing;
  }

  private async retain(): Promise<void> {
    const r = this.o.retention;
    if (r === undefined) return;
    await this.flush();
    try {
      await this.o.store.retain({
        now: this.o.clock.wall(),
        ...(r.maxAgeMs === undefined ? {} : { maxAgeMs: r.maxAgeMs }),
        ...(r.maxRows === undefined ? {} : { maxRows: r.maxRows }),
        ...(r.maxBytes === undefined ? {} : { maxBytes: r.maxBytes }),
      });
    } catch (err) {
      this.o.logger.warn({ err }, 'inference log: retention failed; it runs again next interval');
    }
  }

  /** Runs retention now (tests, and the CLI). */
  retainNow(): Promise<void> {
    return this.retain();
  }

  /**
   * A consent revocation (#15): the user's records still in the buffer are dropped, then every
   * stored one is deleted. Resolves with the records removed.
   */
  async purgeUser(tenant: string, user: string): Promise<number> {
    const before = this.buffered;
    this.requests = this.requests.filter((r) => r.tenant !== tenant || r.user !== user);
    this.calls = this.calls.filter((c) => c.tenant !== tenant || c.user !== user);
    const dropped = before - this.buffered;
    await this.writing; // a batch being written lands before the delete runs
    return dropped + (await this.o.store.purgeUser(tenant, user));
  }

  async query(q?: InferenceQuery): Promise<RequestPage> {
    await this.flush();
    return this.o.store.query(q);
  }

  async get(id: string): Promise<RequestDetail | undefined> {
    await this.flush();
    return this.o.store.get(id);
  }

  /** Stops recording, writes everything held, and closes the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const u of this.unsubscribe.splice(0)) u();
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.retainTimer);
    await this.flush();
    await this.o.store.close();
  }
}

interface RouteEntryJson {
  readonly stage: string;
  readonly kind: string;
  readonly outcome: string;
  readonly code: string;
  readonly reason: string;
  readonly ms: number;
  readonly model?: string;
  readonly version?: string;
  readonly tier?: string;
  readonly children?: readonly RouteEntryJson[];
}

interface JourneyRouteJson {
  readonly stages?: readonly RouteEntryJson[];
  readonly decisions?: readonly string[];
}

/** A journey's route, depth first: a sub-stage is named `<parent>/<child>`. */
function flattenStages(entries: readonly RouteEntryJson[], prefix = ''): StageRecord[] {
  const out: StageRecord[] = [];
  for (const s of entries) {
    out.push({
      stage: prefix + s.stage,
      kind: s.kind,
      outcome: s.outcome,
      code: s.code,
      reason: s.reason,
      ms: s.ms,
      ...(s.model === undefined ? {} : { model: s.model }),
      ...(s.version === undefined ? {} : { version: s.version }),
      ...(s.tier === undefined ? {} : { tier: s.tier }),
    });
    if (s.children !== undefined) out.push(...flattenStages(s.children, `${prefix}${s.stage}/`));
  }
  return out;
}
