import { randomBytes } from 'node:crypto';
import type { AttemptRecord, Operation } from '../contracts/backend.js';
import type {
  BatchLine,
  BatchStatus,
  BatchStore,
  StoredBatch,
  StoredFile,
} from '../contracts/batch-store.js';
import type { JsonObject } from '../contracts/json.js';
import type { Logger } from '../contracts/logger.js';
import type { Clock } from '../core/clock.js';
import { Deadline } from '../core/deadline.js';
import { openAiErrorBody, syError, toSwitchyardError } from '../core/errors.js';
import { events, publish, type RequestDoneEvent } from '../core/events.js';
import type { ResponseStore } from '../contracts/response-store.js';
import type { AdmissionController } from '../admission/admission-controller.js';
import {
  BATCH_ENDPOINTS,
  lineData,
  OUTPUT_EXPIRES_FIELD,
  parseBatchInput,
  RESPONSES_ENDPOINT,
  type BatchInputLine,
} from './batch-lines.js';
import {
  JOURNEY_MODEL_PREFIX,
  journeyChatCompletion,
  openJourneyChat,
  routeJson,
  runJourneyIn,
  type JourneyHost,
} from './journey-chat.js';
import {
  compactAttempts,
  type CallScope,
  type ModelPipeline,
  type ScopeRequest,
} from './model-pipeline.js';
import {
  answerJourneyTurn,
  answerTurn,
  openTurn,
  speaksResponses,
  type ResponsesKeeping,
} from './responses-turn.js';
import { unitOf } from './unit.js';

/** What the runner reads of config (`batches.*`), at every step. */
export interface BatchRunSettings {
  readonly enabled: boolean;
  readonly concurrency: number;
  readonly poll_ms: number;
  readonly min_spare: number;
}

/**
 * The current runtime's parts the runner uses (swapped on reload); its journeys run the
 * `journey:<name>` lines.
 */
export interface BatchRuntime extends JourneyHost {
  readonly pipeline: ModelPipeline;
  readonly admission?: AdmissionController | undefined;
  /** Stored Responses: a `/v1/responses` line with `store` (default true) is kept there. */
  readonly responses?: ResponseStore | undefined;
  readonly snapshot: {
    readonly config: {
      readonly batches: BatchRunSettings;
      readonly server: { readonly drain_ms: number };
      readonly responses: { readonly ttl_s: number };
      readonly models: Readonly<
        Record<string, { readonly backend: string; readonly responses?: boolean }>
      >;
    };
  };
}

/** One line's call, as its endpoint makes it: how its scope opens, and the call. */
interface LineCall {
  /** What the scope reserves, and whose it is: a direct call's, or a journey's. */
  readonly scope: Pick<ScopeRequest, 'estimate' | 'origin' | 'unit'>;
  run(scope: CallScope): Promise<LineAnswer>;
}

/** A line's answer: its body as the route would answer it, and what the line's record adds. */
interface LineAnswer {
  readonly model: string;
  readonly body: JsonObject;
  /** Set when the answer is an error the call answered as a value (a journey that failed). */
  readonly error?: { readonly status: number; readonly code: string };
  /**
   * What the route's request record carries besides: a journey line's journey, route and user,
   * a plain line's user.
   */
  readonly record?: Pick<
    RequestDoneEvent,
    'journey' | 'journeyRoute' | 'degraded' | 'reads' | 'user'
  >;
}

export interface BatchRunnerOptions {
  readonly store: BatchStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly runtime: () => BatchRuntime | undefined;
}

/** The traffic class batch lines ask for (a tenant that may not use it gets its nearest class). */
export const BATCH_CLASS = 'batch';
/** A line's deadline when admission is off or the class declares none. */
const DEFAULT_DEADLINE_MS = 300_000;
/** How often expired files are deleted (wall ms); reads hide them in between. */
const FILE_SWEEP_MS = 60_000;

/** What the runner holds of a batch it works on. */
interface Work {
  readonly input: BatchInputLine[];
  /** Lines claimed by anyone as last read, and by this process since. */
  claimed: Set<number>;
  /** Every line before it is claimed. */
  cursor: number;
  /** Wall ms of the last full read of the batch's lines. */
  scannedAt: number;
  /** Wall ms before which no line starts: admission refused one (its quota, a shed). */
  heldUntil: number;
}

const lineKey = (batchId: string, index: number): string => `${batchId}#${index}`;

/**
 * Runs batches (#16), and deletes expired files (`expires_after`) once a minute: every `batches.poll_ms` (and whenever a line ends) it takes the active
 * batches of the store, oldest first, and starts their unclaimed lines, at most
 * `batches.concurrency` at once, only while load allows: the mode is normal and the line's
 * model gate has more than `batches.min_spare` free slots. Each line is one request through the
 * model pipeline in the batch class, so quotas, budgets, policy, experiments, the cost ledger and
 * the inference log apply to it exactly as to a direct call.
 *
 * Durability: a line is claimed (`started`, synced) before its model call and its result is
 * committed (synced) before the runner counts it, so after a `kill -9` nothing recorded is lost
 * and no line is claimed twice. A line that was started but never committed is at most once:
 * once no call of it can still be running anywhere (its class deadline has passed since the
 * claim), it is committed as an error line `interrupted`, never run again; the upstream may or may
 * not have answered it. See docs/api.md#batches.
 */
export class BatchRunner {
  private readonly running = new Map<string, Promise<void>>();
  private readonly work = new Map<string, Work>();
  /** Aborted when closing outlasted the drain: lines still in flight are cut. */
  private readonly stopping = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private closed = false;
  /** Wall ms of the last sweep of expired files. */
  private sweptAt = -Infinity;

  constructor(private readonly o: BatchRunnerOptions) {}

  start(): void {
    this.schedule(0);
  }

  /** Looks for work now (a line ended, a batch was made or cancelled). */
  kick(): void {
    if (this.closed) return;
    if (this.ticking !== undefined) {
      this.again = true;
      return;
    }
    this.schedule(0);
  }

  /** Lines in flight in this process. */
  inFlight(): number {
    return this.running.size;
  }

  /** Stops starting lines and waits for those in flight to commit. */
  /**
   * Stops starting lines and lets those in flight finish for up to `server.drain_ms`; the rest
   * are aborted and committed as `interrupted` error lines (their calls may have been made).
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.ticking;
    const drainMs = this.o.runtime()?.snapshot.config.server.drain_ms ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const drained = Promise.allSettled([...this.running.values()]);
    await Promise.race([drained, new Promise((r) => (timer = setTimeout(r, drainMs)))]);
    clearTimeout(timer);
    this.stopping.abort();
    await drained;
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.ticking = this.tick().finally(() => {
        this.ticking = undefined;
        const rt = this.o.runtime();
        const poll = rt?.snapshot.config.batches.poll_ms ?? 1_000;
        this.schedule(this.again ? 0 : poll);
        this.again = false;
      });
    }, ms);
    this.timer.unref();
  }

  /** One pass over the active batches. Errors are logged; the next pass tries again. */
  async tick(): Promise<void> {
    const rt = this.o.runtime();
    if (rt === undefined || !rt.snapshot.config.batches.enabled) return;
    await this.sweepFiles();
    let active: Awaited<ReturnType<BatchStore['activeBatches']>>;
    try {
      active = await this.o.store.activeBatches();
    } catch (err) {
      this.o.logger.warn({ err: String(err) }, 'batches: a pass over the active batches failed');
      return;
    }
    // A batch another process (worker, replica) finished is no longer active: drop its parsed input.
    const ids = new Set(active.map((b) => b.id));
    for (const id of this.work.keys()) if (!ids.has(id)) this.work.delete(id);
    for (const b of active) {
      if (this.closed) return;
      // One batch failing (a bad row, a store error) does not hold back the others.
      try {
        await this.step(b, rt);
      } catch (err) {
        this.o.logger.warn({ err: String(err), batch: b.id }, 'batches: a batch step failed');
      }
    }
  }

  /** Deletes the expired files (`expires_after`) every FILE_SWEEP_MS; a failure waits for the next. */
  private async sweepFiles(): Promise<void> {
    const now = this.o.clock.wall();
    if (now - this.sweptAt < FILE_SWEEP_MS) return;
    this.sweptAt = now;
    try {
      const n = await this.o.store.sweepFiles(Math.floor(now / 1000));
      if (n > 0) this.o.logger.info({ files: n }, 'batches: expired files deleted');
    } catch (err) {
      this.o.logger.warn({ err: String(err) }, 'batches: the sweep of expired files failed');
    }
  }

  /**
   * One batch: a full read of its lines at most every `poll_ms` (progress, interrupted lines,
   * cancel, expiry, the end), and between them, new lines started from an in-memory cursor, so a
   * line ending costs no read of the whole batch (50,000 lines would make that quadratic).
   */
  private async step(b: StoredBatch, rt: BatchRuntime): Promise<void> {
    const settings = rt.snapshot.config.batches;
    const w = await this.workOf(b);
    if (w === undefined) return;
    const { input } = w;
    const now = this.o.clock.wall();
    const expired = Math.floor(now / 1000) >= Number(b.batch['expires_at'] ?? Infinity);
    while (w.cursor < input.length && w.claimed.has(w.cursor)) w.cursor++;
    const full =
      b.status !== 'in_progress' ||
      expired ||
      w.cursor >= input.length ||
      now - w.scannedAt >= settings.poll_ms;
    if (full) {
      let rows = await this.o.store.lines(b.id);
      if (await this.interruptStale(b, rows, rt)) rows = await this.o.store.lines(b.id);
      w.scannedAt = now;
      w.claimed = new Set(rows.map((r) => r.index));
      w.cursor = 0;
      while (w.cursor < input.length && w.claimed.has(w.cursor)) w.cursor++;
      // Lines still running anywhere (this process, another worker or replica): the files are
      // written only once every started line is done or, dead, committed as interrupted.
      const inFlight = rows.some((r) => r.state === 'started');
      const done = rows.filter((r) => r.state === 'done');
      if (b.status === 'cancelling') {
        if (!inFlight) await this.finish(b, 'cancelled', rows, input);
        return;
      }
      if (done.length < input.length && expired) {
        if (!inFlight) await this.finish(b, 'expired', rows, input);
        return;
      }
      if (done.length === input.length) {
        await this.finish(b, 'completed', rows, input);
        return;
      }
      await this.count(b, done);
    }
    // Start lines while this process has room and the load allows.
    if (now < w.heldUntil) return;
    for (let i = w.cursor; i < input.length; i++) {
      if (this.closed || this.running.size >= settings.concurrency) return;
      const line = input[i]!;
      if (w.claimed.has(i)) continue;
      if (!loadAllows(rt, line.model, settings.min_spare)) return;
      w.claimed.add(i); // by this process now, or by another before (the claim says which)
      if (!(await this.o.store.claimLine(b.id, i, line.customId, this.o.clock.wall()))) continue;
      const key = lineKey(b.id, i);
      const run = this.runLine(b, line, rt).finally(() => {
        this.running.delete(key);
        this.kick();
      });
      this.running.set(key, run);
    }
  }

  /** The batch's input lines (parsed once); undefined when its file is gone (the batch fails). */
  private async workOf(b: StoredBatch): Promise<Work | undefined> {
    const cached = this.work.get(b.id);
    if (cached !== undefined) return cached;
    const fileId = str(b.batch['input_file_id']);
    const content = await this.o.store.fileContent(b.tenant, fileId);
    if (content === undefined) {
      const now = Math.floor(this.o.clock.wall() / 1000);
      await this.o.store.updateBatch(
        {
          ...b,
          status: 'failed',
          batch: {
            ...b.batch,
            failed_at: now,
            errors: {
              object: 'list',
              data: [
                {
                  code: 'file_not_found',
                  message: `input file ${fileId} was deleted`,
                  param: 'input_file_id',
                  line: null,
                },
              ],
            },
          },
        },
        [b.status],
      );
      publish(events.batchEnd, { endpoint: str(b.batch['endpoint']), status: 'failed' });
      return undefined;
    }
    // Validated when it was made: a lower `max_lines` since must not drop lines of it.
    const input = parseBatchInput(content, str(b.batch['endpoint']), Infinity).lines;
    const w: Work = { input, claimed: new Set(), cursor: 0, scannedAt: -Infinity, heldUntil: 0 };
    this.work.set(b.id, w);
    return w;
  }

  /**
   * Started lines no call can still be running for (claimed longer ago than the class deadline,
   * and not in flight here) are committed as `interrupted` error lines: at most once (see above).
   */
  private async interruptStale(
    b: StoredBatch,
    rows: readonly BatchLine[],
    rt: BatchRuntime,
  ): Promise<boolean> {
    const lease = deadlineOf(rt, b.tenant) + rt.snapshot.config.batches.poll_ms;
    const now = this.o.clock.wall();
    let any = false;
    for (const r of rows) {
      if (r.state !== 'started' || this.running.has(lineKey(b.id, r.index))) continue;
      if (now - r.startedAt < lease) continue;
      const result: JsonObject = {
        id: `batch_req_${randomBytes(12).toString('hex')}`,
        custom_id: r.customId,
        response: null,
        error: interrupted('the gateway stopped while this line ran'),
      };
      if (await this.o.store.commitLine(b.id, r.index, { ok: false, result, cost: 0 })) {
        any = true;
        publish(events.batchLine, { endpoint: str(b.batch['endpoint']), outcome: 'interrupted' });
      }
    }
    return any;
  }

  /** Keeps `request_counts` current while the batch runs. */
  private async count(b: StoredBatch, done: readonly BatchLine[]): Promise<void> {
    const counts = countsOf(b, done);
    const old = b.batch['request_counts'] as JsonObject | undefined;
    if (old?.['completed'] === counts['completed'] && old?.['failed'] === counts['failed']) return;
    await this.o.store.updateBatch({ ...b, batch: { ...b.batch, request_counts: counts } }, [
      b.status,
    ]);
  }

  /**
   * Ends a batch: its output and error files (done lines in input order; for an expired batch,
   * a `batch_expired` error line per line never done) and its final status, in one write.
   */
  private async finish(
    b: StoredBatch,
    status: BatchStatus,
    rows: readonly BatchLine[],
    input: readonly BatchInputLine[],
  ): Promise<void> {
    const done = rows.filter((r) => r.state === 'done');
    const out: string[] = [];
    const errs: string[] = [];
    for (const r of done) (r.ok ? out : errs).push(JSON.stringify(r.result));
    if (status === 'expired') {
      const finished = new Set(done.map((r) => r.index));
      for (const l of input)
        if (!finished.has(l.index))
          errs.push(
            JSON.stringify({
              id: `batch_req_${randomBytes(12).toString('hex')}`,
              custom_id: l.customId,
              response: null,
              error: {
                code: 'batch_expired',
                message: 'This request could not be executed before the completion window expired.',
              },
            }),
          );
    }
    const now = Math.floor(this.o.clock.wall() / 1000);
    const ttl = b.batch[OUTPUT_EXPIRES_FIELD];
    const files: { file: StoredFile; content: Buffer }[] = [];
    const fileOf = (purpose: string, lines: string[]): string | null => {
      if (lines.length === 0) return null;
      const content = Buffer.from(lines.join('\n') + '\n');
      const id = `file-${randomBytes(12).toString('hex')}`;
      files.push({
        file: {
          id,
          tenant: b.tenant,
          filename: `${b.id}_${purpose === 'batch_output' ? 'output' : 'error'}.jsonl`,
          purpose,
          bytes: content.length,
          createdAt: now,
          expiresAt: typeof ttl === 'number' ? now + ttl : null,
        },
        content,
      });
      return id;
    };
    const counts = countsOf(b, done);
    if (status === 'expired')
      counts['failed'] = Number(counts['total']) - Number(counts['completed']);
    const batch: JsonObject = {
      ...b.batch,
      output_file_id: fileOf('batch_output', out),
      error_file_id: fileOf('batch_error', errs),
      request_counts: counts,
      finalizing_at: b.batch['finalizing_at'] ?? now,
      [`${status}_at`]: now,
    };
    const ok = await this.o.store.updateBatch({ ...b, status, batch }, [b.status], files);
    if (ok) {
      this.work.delete(b.id);
      publish(events.batchEnd, { endpoint: str(b.batch['endpoint']), status });
    }
  }

  /**
   * A `/v1/responses` line: the route's non-streamed turn (#16), so its output line's body is the
   * Response object the route would answer. `store` is honoured as the route honours it: a stored
   * batch Response is the tenant's, retrievable by id and usable as `previous_response_id`. A
   * journey model answers as it answers the route: its chat completion, as a Response.
   */
  private async responsesCall(
    tenant: string,
    line: BatchInputLine,
    rt: BatchRuntime,
  ): Promise<LineCall> {
    const clock = this.o.clock;
    const keeping: ResponsesKeeping = {
      store: rt.responses,
      ttlS: rt.snapshot.config.responses.ttl_s,
    };
    const { turn, chat } = await openTurn(line.body, {
      tenant,
      user: undefined,
      keeping,
      now: clock.wall(),
    });
    if (turn.model.startsWith(JOURNEY_MODEL_PREFIX))
      return journeyCall(rt, tenant, chat, (completion) =>
        answerJourneyTurn(keeping, tenant, turn, completion, clock.wall()),
      );
    const passThrough = speaksResponses(rt.snapshot.config.models[line.model]);
    return {
      scope: { origin: 'direct', estimate: rt.pipeline.estimate('chat', chat, line.model) },
      run: async (scope) => {
        const r = await answerTurn(rt.pipeline, scope, {
          turn,
          chat,
          passThrough,
          keeping,
          now: () => clock.wall(),
        });
        return { model: r.model, body: r.answer };
      },
    };
  }

  /** One line: a request of its own through the pipeline, in the batch class; then committed. */
  private async runLine(b: StoredBatch, line: BatchInputLine, rt: BatchRuntime): Promise<void> {
    const { pipeline, admission: ac } = rt;
    const clock = this.o.clock;
    const endpoint = str(b.batch['endpoint']);
    const op = BATCH_ENDPOINTS[endpoint] ?? 'chat';
    const requestId = `batch_req_${randomBytes(12).toString('hex')}`;
    const trafficClass =
      ac === undefined ? BATCH_CLASS : ac.classify(b.tenant, undefined, BATCH_CLASS);
    const attempts: AttemptRecord[] = [];
    const t0 = clock.now();
    const deadline = new Deadline(deadlineOf(rt, b.tenant), clock);
    const stop = (): void =>
      deadline.abort(syError('SY_ERR_CLIENT_CLOSED', 'the gateway shut down while the line ran'));
    this.stopping.signal.addEventListener('abort', stop, { once: true });
    let model = line.model;
    let body: JsonObject;
    let status = 200;
    let code: string | undefined;
    let record: LineAnswer['record'];
    let cost = 0;
    try {
      // A batch line has one answer: a line asking to stream is refused alone, uncalled.
      if (line.body['stream'] === true)
        throw syError(
          'SY_ERR_INVALID_REQUEST',
          'a batch line cannot stream (its answer is one JSON body): drop "stream" or set it false',
          { param: 'stream' },
        );
      // A journey is a chat model: checked as the chat route checks it, when its call is made.
      const journey = op === 'chat' && line.model.startsWith(JOURNEY_MODEL_PREFIX);
      if (!journey) pipeline.preflight(b.tenant, line.model, op);
      const call =
        endpoint === RESPONSES_ENDPOINT
          ? await this.responsesCall(b.tenant, line, rt)
          : journey
            ? journeyCall(rt, b.tenant, line.body)
            : plainCall(pipeline, op, line);
      let scope;
      try {
        scope = await pipeline.open({
          requestId,
          tenant: b.tenant,
          keyId: str(b.batch['switchyard_key_id']),
          trafficClass,
          signal: deadline.signal,
          deadlineAt: deadline.at,
          attempts,
          ...call.scope,
          ...lineData(b.tenant, b.batch, line),
        });
      } catch (err) {
        const e = toSwitchyardError(err);
        if (e.retryable) {
          // Admission refused it (quota, shed, budget): no model call was made, it runs later.
          await this.o.store.releaseLine(b.id, line.index);
          publish(events.batchLine, { endpoint, outcome: 'deferred' });
          const w = this.work.get(b.id);
          w?.claimed.delete(line.index);
          if (w !== undefined) {
            w.cursor = Math.min(w.cursor, line.index);
            // Not again before the next poll: a spent quota would otherwise spin.
            w.heldUntil = clock.wall() + rt.snapshot.config.batches.poll_ms;
          }
          return;
        }
        throw e;
      }
      try {
        const r = await call.run(scope);
        model = r.model;
        body = r.body;
        record = r.record;
        if (r.error !== undefined) ({ status, code } = r.error);
      } finally {
        cost = scope.used.cost;
        pipeline.close(scope);
      }
    } catch (err) {
      const e = toSwitchyardError(err);
      status = e.status;
      code = e.code;
      body = openAiErrorBody(e, requestId);
    } finally {
      this.stopping.signal.removeEventListener('abort', stop);
      deadline.dispose();
    }
    const ok = status === 200;
    const cut = !ok && this.stopping.signal.aborted;
    const result: JsonObject = {
      id: requestId,
      custom_id: line.customId,
      response: cut ? null : { status_code: status, request_id: requestId, body },
      error: cut ? interrupted('the gateway shut down while this line ran') : null,
    };
    // The line's record: the request log, metrics, the inference log and the cost ledger.
    publish(events.requestDone, {
      requestId,
      method: 'POST',
      route: endpoint,
      model,
      tenant: b.tenant,
      keyFingerprint: '',
      trafficClass,
      status,
      code,
      durationMs: clock.now() - t0,
      stream: false,
      path: compactAttempts(attempts),
      ...record,
    });
    try {
      if (await this.o.store.commitLine(b.id, line.index, { ok, result, cost }))
        publish(events.batchLine, {
          endpoint,
          outcome: ok ? 'completed' : cut ? 'interrupted' : 'failed',
        });
      else
        this.o.logger.warn(
          { batch: b.id, line: line.index },
          'batches: a line ended after it was marked interrupted',
        );
    } catch (err) {
      // Not committed: the line stays started and is marked interrupted once its lease ends.
      this.o.logger.error(
        { err: String(err), batch: b.id, line: line.index },
        'batches: a line result could not be recorded',
      );
    }
  }
}

/** A line of an endpoint that takes the body as it is (chat, embeddings, completions, moderations). */
function plainCall(pipeline: ModelPipeline, op: Operation, line: BatchInputLine): LineCall {
  // The OpenAI `user` field is whose request it is, as on the route: the release assignment
  // unit (a user's lines get the variant their direct calls get) and the record's user.
  const user = typeof line.body['user'] === 'string' ? line.body['user'] : undefined;
  return {
    scope: {
      origin: 'direct',
      estimate: pipeline.estimate(op, line.body, line.model),
      ...(user === undefined ? {} : { unit: unitOf({ user }) }),
    },
    run: async (scope) => {
      const r = await pipeline.call(scope, {
        op,
        model: line.model,
        body: line.body,
        direct: true,
      });
      return {
        model: r.model,
        body: r.response.json,
        ...(user === undefined ? {} : { record: { user } }),
      };
    },
  };
}

/**
 * A chat request to a journey (`journey:<name>`), checked, run and shaped as the chat route does
 * it (`journey-chat.ts`), in the line's scope: the batch class, the line's deadline, the journey's
 * origin. A journey that fails answers its error with its route, as the route does; `answer`
 * makes the endpoint's body of its chat.completion.
 */
function journeyCall(
  rt: BatchRuntime,
  tenant: string,
  body: JsonObject,
  answer: (completion: JsonObject) => Promise<JsonObject> = (c) => Promise.resolve(c),
): LineCall {
  const chat = openJourneyChat(rt, tenant, body);
  return {
    scope: { origin: 'journey', estimate: chat.estimate, unit: unitOf(chat.attributes) },
    run: async (scope) => {
      const out = await runJourneyIn(rt, chat.journey, scope, chat.input, chat.attributes);
      const route = routeJson(out.route);
      const user = chat.attributes['user'];
      const record = {
        journey: chat.journey.name,
        journeyRoute: route,
        degraded: out.degraded,
        ...(out.reads === undefined ? {} : { reads: out.reads }),
        ...(typeof user === 'string' ? { user } : {}),
      };
      if (!out.ok) {
        const e = out.error;
        return {
          model: chat.model,
          body: { ...openAiErrorBody(e, scope.requestId), route },
          error: { status: e.status, code: e.code },
          record,
        };
      }
      const completion = journeyChatCompletion(
        scope.requestId,
        chat.model,
        out.body,
        out.used,
        out.route,
      );
      return { model: chat.model, body: await answer(completion), record };
    },
  };
}

/** Load allows a batch line: the mode is normal and the model's gate has spare slots. */
export function loadAllows(rt: BatchRuntime, model: string, minSpare: number): boolean {
  const ac = rt.admission;
  if (ac === undefined) return true;
  if (ac.modes.current().mode !== 'normal') return false;
  return ac.spare(model) > minSpare;
}

/** The deadline of one line: the batch class's. */
function deadlineOf(rt: BatchRuntime, tenant: string): number {
  const ac = rt.admission;
  if (ac === undefined) return DEFAULT_DEADLINE_MS;
  return (
    ac.classSpec(ac.classify(tenant, undefined, BATCH_CLASS))?.deadline_ms ?? DEFAULT_DEADLINE_MS
  );
}

function countsOf(b: StoredBatch, done: readonly BatchLine[]): JsonObject {
  const total = Number((b.batch['request_counts'] as JsonObject | undefined)?.['total'] ?? 0);
  const completed = done.filter((r) => r.ok).length;
  return { total, completed, failed: done.length - completed };
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** The error of a line cut by a stop: it is not run again (its upstream call may have been made). */
function interrupted(why: string): JsonObject {
  return {
    code: 'interrupted',
    message: `${why}; it is not run again (its upstream call may have been made)`,
  };
}
