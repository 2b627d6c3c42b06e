import type { Operation } from '../contracts/backend.js';
import type { ModelCallRecord, RequestDetail } from '../contracts/inference-log.js';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import type { SlotOutput } from '../contracts/slot-resolver.js';
import type { RouteEntry } from '../contracts/stage.js';
import { RequestAbortController } from '../core/abort.js';
import { toSwitchyardError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';
import { compactRoute } from '../orchestrator/runner.js';
import {
  compactAttempts,
  type CallScope,
  type ReplayCandidate,
} from '../pipeline/model-pipeline.js';
import { comparableOutput } from '../pipeline/outputs.js';
import { compareOutputs } from '../release/shadow-runner.js';
import { snake } from '../observability/inference-query.js';
import { messagesToChat } from './anthropic-request.js';
import { toChatRequest, validateResponsesRequest, withIds } from '../pipeline/responses-chat.js';
import type { Runtime } from './runtime.js';

/**
 * Replay (#15): re-runs logged requests whose payload the inference log kept, through the one
 * pipeline with origin `replay`, against a candidate, and compares the answers with the logged
 * ones. A replay charges no quota or budget, adds nothing to the cost ledger, reads and writes no
 * response cache, counts no experiment exposure, mirrors no shadow copy, and is not logged unless
 * asked: its report is its only trace.
 */

export interface ReplayOptions {
  readonly candidate?: ReplayCandidate;
  /** Keep the replay's model calls in the inference log, filed under the replayed request. */
  readonly log: boolean;
  /** Each replayed request's deadline. */
  readonly timeoutMs: number;
  /** Embeddings (vectors without a label) agree when their cosine is at least this. */
  readonly minCosine: number;
}

/** Why a record was not replayed. */
export type SkipReason = 'no_payload' | 'unsupported_route' | 'not_found' | 'no_model';

export interface ReplaySkip {
  readonly id: string;
  readonly skipped: SkipReason;
}

/** One side of a comparison: what ran, its route, time, cost and outcome. */
export interface ReplaySide {
  readonly versions: readonly string[];
  readonly route: string;
  readonly ms: number;
  readonly cost: number;
  readonly outcome: string;
}

export interface ReplayResult {
  readonly id: string;
  readonly tenant: string;
  /** `model` (a direct call) or `journey`. */
  readonly kind: 'model' | 'journey';
  /** The model or journey the request asked for. */
  readonly target: string;
  readonly baseline: ReplaySide;
  readonly candidate: ReplaySide;
  /** The comparable answers are identical (canonical JSON). Null: the log kept no answer. */
  readonly exact: boolean | null;
  /** Both answers have a label (a classifier's arg-max, a chat's text): are they the same? */
  readonly sameLabel: boolean | null;
  /** Both answers have a vector (embeddings, KServe outputs): their cosine similarity. */
  readonly cosine: number | null;
  /** The verdict: the same label when there is one, else cosine ≥ min, else exact. */
  readonly agree: boolean | null;
  /** candidate.ms − baseline.ms */
  readonly latencyDeltaMs: number;
  /** candidate.cost − baseline.cost */
  readonly costDelta: number;
  readonly routeChanged: boolean;
}

export type ReplayEntry = ReplayResult | ReplaySkip;

export const isSkip = (e: ReplayEntry): e is ReplaySkip => 'skipped' in e;

/** What a logged request asked for, in a form the pipeline or the journey runner can run again. */
type Replayable =
  | {
      readonly kind: 'model';
      readonly op: Operation | 'responses';
      readonly model: string;
      readonly body: JsonObject;
      /**
       * The protocol the client spoke, when it is not the operation's own: an Anthropic Message
       * or a Response, logged in that form and replayed as the route ran it (#16), so answers
       * are compared as text and tool calls, whatever form each side is in.
       */
      readonly shape?: 'anthropic' | 'responses';
      /** The version the request pinned in its path. */
      readonly version?: string;
    }
  | {
      readonly kind: 'journey';
      readonly journey: string;
      readonly input: JsonObject;
      readonly attributes: JsonObject;
    };

const INFER_ROUTES = new Set([
  '/v2/models/:name/infer',
  '/v2/models/:name/versions/:version/infer',
]);

/** The calls the request made itself (not its shadow copies, not earlier replays). */
function ownCalls(d: RequestDetail): readonly ModelCallRecord[] {
  return d.calls.filter((c) => c.origin === 'direct' || c.origin === 'journey');
}

function replayable(d: RequestDetail): Replayable | SkipReason {
  const request = d.payload?.request;
  if (request === undefined || !isJsonObject(request)) return 'no_payload';
  if (d.journey !== undefined) {
    const input = request['input'];
    const attributes = request['attributes'] ?? {};
    if (!isJsonObject(input) || !isJsonObject(attributes)) return 'no_payload';
    return { kind: 'journey', journey: d.journey, input, attributes };
  }
  // The name the request asked for (an alias or a slot), not what release management picked.
  const asked = ownCalls(d)[0]?.requested ?? d.model;
  if (asked === '') return 'no_model';
  if (INFER_ROUTES.has(d.route)) {
    // A request that pinned a version in its path is replayed on that version (unless the
    // candidate replaces it).
    const pinned = d.route.includes('/versions/') ? ownCalls(d)[0]?.version : undefined;
    return {
      kind: 'model',
      op: 'infer',
      model: asked,
      body: request,
      ...(pinned === undefined || pinned === '' ? {} : { version: pinned }),
    };
  }
  if (d.route === '/v1/embeddings')
    return { kind: 'model', op: 'embeddings', model: asked, body: request };
  // Replayed whole, never streamed: the comparison needs the answer.
  const { stream: _s, stream_options: _o, ...whole } = request;
  if (d.route === '/v1/chat/completions')
    return { kind: 'model', op: 'chat', model: asked, body: whole };
  if (d.route === '/v1/completions')
    return { kind: 'model', op: 'completions', model: asked, body: whole };
  if (d.route === '/v1/moderations')
    return { kind: 'model', op: 'moderations', model: asked, body: request };
  try {
    if (d.route === '/v1/messages')
      return {
        kind: 'model',
        op: 'chat',
        model: asked,
        body: messagesToChat(whole),
        shape: 'anthropic',
      };
    if (d.route === '/v1/responses') {
      // The route logs the whole context as `input` (a previous_response_id expanded).
      const chat = toChatRequest(whole, withIds(validateResponsesRequest(whole)));
      const viaResponses = ownCalls(d)[0]?.op === 'responses';
      return {
        kind: 'model',
        op: viaResponses ? 'responses' : 'chat',
        model: asked,
        body: viaResponses ? { ...whole, store: false } : chat,
        shape: 'responses',
      };
    }
  } catch {
    return 'no_payload'; // a redacted payload no longer makes a valid request
  }
  return 'unsupported_route';
}

/**
 * The text and tool calls of a chat completion, an Anthropic Message or a Response, in one form:
 * how answers of different protocols compare (ids and times left out).
 */
function spoken(json: JsonObject): { text: string; tools: JsonValue[] } | undefined {
  const tools: JsonValue[] = [];
  const args = (a: JsonValue | undefined): JsonValue => {
    if (typeof a !== 'string') return a ?? null;
    try {
      return JSON.parse(a) as JsonValue;
    } catch {
      return a;
    }
  };
  const choices = json['choices'];
  if (Array.isArray(choices)) {
    const msg = isJsonObject(choices[0]) ? choices[0]['message'] : undefined;
    if (!isJsonObject(msg)) return undefined;
    const calls = msg['tool_calls'];
    if (Array.isArray(calls))
      for (const c of calls)
        if (isJsonObject(c) && isJsonObject(c['function']))
          tools.push({
            name: c['function']['name'] ?? null,
            input: args(c['function']['arguments']),
          });
    return { text: typeof msg['content'] === 'string' ? msg['content'] : '', tools };
  }
  const blocks = json['content'];
  if (json['type'] === 'message' && Array.isArray(blocks)) {
    let text = '';
    for (const b of blocks) {
      if (!isJsonObject(b)) continue;
      if (b['type'] === 'text' && typeof b['text'] === 'string') text += b['text'];
      if (b['type'] === 'tool_use')
        tools.push({ name: b['name'] ?? null, input: b['input'] ?? null });
    }
    return { text, tools };
  }
  const output = json['output'];
  if (Array.isArray(output)) {
    let text = '';
    for (const item of output) {
      if (!isJsonObject(item)) continue;
      if (item['type'] === 'function_call')
        tools.push({ name: item['name'] ?? null, input: args(item['arguments']) });
      const parts = item['type'] === 'message' ? item['content'] : undefined;
      if (Array.isArray(parts))
        for (const p of parts)
          if (isJsonObject(p) && p['type'] === 'output_text' && typeof p['text'] === 'string')
            text += p['text'];
    }
    return { text, tools };
  }
  return undefined;
}

/** The logged side: versions, route, latency (the model call's, or the journey's stages), cost. */
function baselineOf(d: RequestDetail): ReplaySide {
  const calls = ownCalls(d);
  let ms = d.durationMs;
  if (d.journey !== undefined && d.stages !== undefined && d.stages.length > 0)
    ms = d.stages.filter((s) => !s.stage.includes('/')).reduce((n, s) => n + s.ms, 0);
  else if (d.journey === undefined && calls.length > 0) ms = calls.reduce((n, c) => n + c.ms, 0);
  return { versions: d.versions, route: d.path, ms, cost: d.cost, outcome: d.outcome };
}

/** The comparable part of a logged or replayed answer. */
function comparable(r: Replayable, answer: JsonValue | undefined): SlotOutput | undefined {
  if (answer === undefined || !isJsonObject(answer)) return undefined;
  if (r.kind === 'journey') return {};
  if (r.shape !== undefined) {
    const said = spoken(answer);
    return said === undefined ? {} : { label: said.text };
  }
  return comparableOutput(r.op, answer);
}

/** Canonical JSON: object keys sorted, so equal answers compare equal whatever the key order. */
function canonical(v: JsonValue | undefined): string {
  if (v === undefined) return '';
  return JSON.stringify(v, (_k, x: unknown) =>
    isJsonObject(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1)))
      : x,
  );
}

/** The part of an answer that is the answer (a journey's output; a model's whole answer less ids and times). */
function answerOf(r: Replayable, json: JsonValue | undefined): JsonValue | undefined {
  if (json === undefined || !isJsonObject(json)) return json;
  if (r.kind === 'journey') return json['output'];
  if (r.shape !== undefined) return spoken(json) ?? null;
  if (r.op === 'infer') return json['outputs'];
  if (r.op === 'embeddings') return json['data'];
  if (r.op === 'moderations') return json['results'];
  if (r.op === 'completions') {
    const choices = json['choices'];
    return Array.isArray(choices)
      ? choices.map((c) => (isJsonObject(c) ? (c['text'] ?? null) : null))
      : undefined;
  }
  const choices = json['choices'];
  return Array.isArray(choices)
    ? choices.map((c) => (isJsonObject(c) ? (c['message'] ?? null) : null))
    : undefined;
}

/** Replays one logged request; a failed candidate call is a result (outcome = its code), not an error. */
export async function replayRecord(
  runtime: Runtime,
  d: RequestDetail,
  o: ReplayOptions,
  signal: AbortSignal,
): Promise<ReplayEntry> {
  const r = replayable(d);
  if (typeof r === 'string') return { id: d.id, skipped: r };
  const clock = runtime.admission?.clock;
  const now = (): number => clock?.now() ?? performance.now();
  const ac = new RequestAbortController();
  const onAbort = (): void => ac.abort(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => ac.abort(), o.timeoutMs);
  timer.unref();
  const pipeline = runtime.pipeline;
  try {
    const scope: CallScope = await pipeline.open({
      // With `log`, the replay's calls file under the replayed request (`<id>:replay`).
      requestId: `${d.id}:replay`,
      tenant: d.tenant,
      keyId: '',
      trafficClass: 'batch',
      signal: ac.signal,
      deadlineAt: now() + o.timeoutMs,
      origin: 'replay',
      attempts: [],
      unit: { attributes: {}, ...(d.user === undefined ? {} : { userId: d.user }) },
      estimate: undefined,
      replay: { log: o.log, ...(o.candidate === undefined ? {} : { candidate: o.candidate }) },
    });
    let answer: JsonValue | undefined;
    const versions: string[] = [];
    let route: string;
    let outcome = 'ok';
    let ms: number;
    const t0 = now();
    if (r.kind === 'journey') {
      const journeys = runtime.journeys;
      const journey = journeys?.compiled.get(r.journey);
      if (journeys === undefined || journey === undefined) return { id: d.id, skipped: 'no_model' };
      const out = await journeys.runner.run(journey, {
        requestId: scope.requestId,
        tenant: d.tenant,
        trafficClass: scope.trafficClass,
        input: r.input,
        attributes: r.attributes,
        signal: scope.signal,
        deadlineAt: scope.deadlineAt,
        models: runtime.catalog.invoker(scope),
        replay: true,
      });
      route = compactRoute(out.route);
      ms = out.route.ms;
      const walk = (entries: readonly RouteEntry[]): void => {
        for (const e of entries) {
          if (e.model !== undefined && e.version !== undefined)
            versions.push(`${e.model}@${e.version}`);
          if (e.children !== undefined) walk(e.children);
        }
      };
      walk(out.route.stages);
      if (out.ok) answer = { output: out.body };
      else outcome = out.error.code;
    } else {
      try {
        const res = await pipeline.call(scope, {
          op: r.op,
          model: r.model,
          body: r.body,
          ...(r.version === undefined ? {} : { opts: { version: r.version } }),
        });
        answer = res.response.json;
        ms = res.ms;
        versions.push(`${res.servedBy}@${res.version}`);
      } catch (err) {
        outcome = toSwitchyardError(err).code;
        ms = now() - t0;
      }
      route = compactAttempts(scope.attempts);
    }
    pipeline.close(scope);
    const baseline = baselineOf(d);
    const logged = d.payload?.response;
    const before = comparable(r, logged);
    const after = outcome === 'ok' ? comparable(r, answer) : undefined;
    const c =
      before === undefined || after === undefined ? undefined : compareOutputs(before, after);
    const exact =
      logged === undefined
        ? null
        : outcome === 'ok' && canonical(answerOf(r, logged)) === canonical(answerOf(r, answer));
    const sameLabel = c?.agree ?? (before !== undefined && outcome !== 'ok' ? false : null);
    const cosine = c?.cosine ?? null;
    const agree =
      logged === undefined
        ? null
        : sameLabel !== null
          ? sameLabel
          : cosine !== null
            ? cosine >= o.minCosine
            : exact;
    const candidate: ReplaySide = {
      versions: [...new Set(versions)],
      route,
      ms,
      cost: scope.used.cost,
      outcome,
    };
    return {
      id: d.id,
      tenant: d.tenant,
      kind: r.kind,
      target: r.kind === 'journey' ? r.journey : r.model,
      baseline,
      candidate,
      exact,
      sameLabel,
      cosine,
      agree,
      latencyDeltaMs: candidate.ms - baseline.ms,
      costDelta: candidate.cost - baseline.cost,
      routeChanged: candidate.route !== baseline.route,
    };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

/** What a replay adds up to. Latency deltas are nearest-rank percentiles over replayed requests. */
export interface ReplaySummary {
  readonly replayed: number;
  readonly skipped: Readonly<Record<SkipReason, number>>;
  /** Replayed requests whose logged answer could be compared. */
  readonly compared: number;
  readonly agreed: number;
  /** agreed / compared; null when nothing was compared. */
  readonly agreementRate: number | null;
  readonly exactRate: number | null;
  /** Replayed requests whose candidate failed (outcome not `ok`). */
  readonly candidateErrors: number;
  readonly routeChanges: number;
  readonly latencyDeltaMs: {
    readonly p50: number;
    readonly p95: number;
    readonly mean: number;
  } | null;
  readonly cost: { readonly baseline: number; readonly candidate: number; readonly delta: number };
}

/** The nearest-rank percentile (q in (0, 1]) of sorted values. */
export function nearestRank(sorted: readonly number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

export function summarizeReplay(entries: readonly ReplayEntry[]): ReplaySummary {
  const skipped: Record<SkipReason, number> = {
    no_payload: 0,
    unsupported_route: 0,
    not_found: 0,
    no_model: 0,
  };
  const done: ReplayResult[] = [];
  for (const e of entries) {
    if (isSkip(e)) skipped[e.skipped]++;
    else done.push(e);
  }
  const compared = done.filter((r) => r.agree !== null);
  const agreed = compared.filter((r) => r.agree === true).length;
  const exact = done.filter((r) => r.exact !== null);
  const deltas = done.map((r) => r.latencyDeltaMs).sort((a, b) => a - b);
  const baseline = done.reduce((n, r) => n + r.baseline.cost, 0);
  const candidate = done.reduce((n, r) => n + r.candidate.cost, 0);
  return {
    replayed: done.length,
    skipped,
    compared: compared.length,
    agreed,
    agreementRate: compared.length === 0 ? null : agreed / compared.length,
    exactRate:
      exact.length === 0 ? null : exact.filter((r) => r.exact === true).length / exact.length,
    candidateErrors: done.filter((r) => r.candidate.outcome !== 'ok').length,
    routeChanges: done.filter((r) => r.routeChanged).length,
    latencyDeltaMs:
      deltas.length === 0
        ? null
        : {
            p50: nearestRank(deltas, 0.5),
            p95: nearestRank(deltas, 0.95),
            mean: deltas.reduce((n, x) => n + x, 0) / deltas.length,
          },
    cost: { baseline, candidate, delta: candidate - baseline },
  };
}

/** The report as `POST /admin/replay` and `switchyard replay --json` give it (snake_case). */
export function replayReportJson(
  entries: readonly ReplayEntry[],
  candidate: JsonObject,
): JsonObject {
  return {
    candidate,
    summary: snake(summarizeReplay(entries)),
    requests: entries.map((e) => snake(e)),
  };
}
