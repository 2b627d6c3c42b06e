import { OnnxBackend } from '../backends/onnx/onnx-backend.js';
import type { InferenceQuery, RequestDetail } from '../contracts/inference-log.js';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import { syError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';
import {
  parseRequestQuery,
  RequestQueryError,
  type RequestParam,
} from '../observability/inference-query.js';
import type { ReplayCandidate } from '../pipeline/model-pipeline.js';
import { replayRecord, replayReportJson, type ReplayEntry, type ReplayOptions } from './replay.js';
import type { Runtime } from './runtime.js';

/**
 * A replay request (#15): the body of `POST /admin/replay`, which `switchyard replay` builds too,
 * parsed and checked in one place; the records it selects; and the run over them.
 */

/** The filters `POST /admin/replay` takes: those of `GET /admin/requests`, less paging. */
const FILTERS = [
  'tenant',
  'journey',
  'model',
  'outcome',
  'since',
  'until',
  'trace_id',
  'user',
] as const;
const KEYS = new Set<string>([
  ...FILTERS,
  'limit',
  'ids',
  'candidate',
  'log',
  'timeout_ms',
  'min_cosine',
  'stream',
]);
const MAX_REQUESTS = 1_000;

function bad(detail: string, param: string): never {
  throw syError('SY_ERR_INVALID_REQUEST', detail, { param });
}

/** `{model, version?, replaces?}`: the model must be served here, and the version by it. */
export function parseCandidate(
  runtime: Runtime,
  v: JsonValue | undefined,
): ReplayCandidate | undefined {
  if (v === undefined) return undefined;
  if (!isJsonObject(v))
    bad('"candidate" must be an object {model, version?, replaces?}', 'candidate');
  for (const k of Object.keys(v))
    if (k !== 'model' && k !== 'version' && k !== 'replaces')
      bad(
        `unknown field "${k.slice(0, 64)}"; use model, version, replaces`,
        `candidate.${k.slice(0, 64)}`,
      );
  const { model, version, replaces } = v;
  if (typeof model !== 'string' || model === '' || model.length > 256)
    bad('"candidate.model" must be a model name', 'candidate.model');
  if (
    version !== undefined &&
    (typeof version !== 'string' || version === '' || version.length > 64)
  )
    bad('"candidate.version" must be a version string', 'candidate.version');
  if (
    replaces !== undefined &&
    (typeof replaces !== 'string' || replaces === '' || replaces.length > 256)
  )
    bad('"candidate.replaces" must be a model or slot name', 'candidate.replaces');
  const handle = runtime.models.get(model);
  if (handle === undefined)
    throw syError('SY_ERR_MODEL_NOT_FOUND', JSON.stringify(model.slice(0, 200)), {
      param: 'candidate.model',
    });
  if (version !== undefined && handle.backend instanceof OnnxBackend) {
    try {
      handle.backend.current(version);
    } catch {
      throw syError(
        'SY_ERR_MODEL_NOT_FOUND',
        `${model} serves no version ${JSON.stringify(version)}`,
        {
          param: 'candidate.version',
        },
      );
    }
  }
  return {
    model,
    replaces: replaces ?? model,
    ...(version === undefined ? {} : { version }),
  };
}

function bool(v: JsonValue | undefined, param: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') bad(`"${param}" must be true or false`, param);
  return v;
}

function int(
  v: JsonValue | undefined,
  param: string,
  min: number,
  max: number,
  dflt: number,
): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    bad(`"${param}" must be a whole number from ${min} to ${max}`, param);
  return v;
}

interface Selection {
  readonly ids?: readonly string[];
  readonly query: InferenceQuery & { readonly limit: number };
}

function parseSelection(body: JsonObject): Selection {
  const given: Partial<Record<RequestParam, string>> = {};
  for (const k of FILTERS) {
    const v = body[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' && typeof v !== 'number') bad(`"${k}" must be a string`, k);
    given[k] = String(v);
  }
  const limit = int(body['limit'], 'limit', 1, MAX_REQUESTS, 100);
  let query;
  try {
    query = parseRequestQuery({ ...given, limit: String(limit) });
  } catch (err) {
    if (err instanceof RequestQueryError) bad(err.message, err.param);
    throw err;
  }
  const ids = body['ids'];
  if (ids === undefined) return { query };
  if (
    !Array.isArray(ids) ||
    ids.length === 0 ||
    ids.length > MAX_REQUESTS ||
    !ids.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 256)
  )
    bad(`"ids" must be 1 to ${MAX_REQUESTS} request ids`, 'ids');
  if (Object.keys(given).length > 0) bad('give "ids" or filters, not both', 'ids');
  return { ids: ids as string[], query };
}

/** The records to replay, oldest first (the order they were served). */
async function select(runtime: Runtime, s: Selection): Promise<(RequestDetail | string)[]> {
  const log = runtime.inferenceLog;
  if (log === undefined) throw syError('SY_ERR_INFERENCE_LOG_OFF', 'there is nothing to replay');
  if (s.ids !== undefined) return Promise.all(s.ids.map(async (id) => (await log.get(id)) ?? id));
  const ids: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await log.query({
      ...s.query,
      limit: Math.min(REQUEST_PAGE, s.query.limit - ids.length),
      ...(cursor === undefined ? {} : { cursor }),
    });
    for (const r of page.records) ids.push(r.id);
    cursor = page.nextCursor;
  } while (cursor !== undefined && ids.length < s.query.limit);
  ids.reverse();
  return Promise.all(ids.map(async (id) => (await log.get(id)) ?? id));
}
const REQUEST_PAGE = 200;

/** A parsed replay request: the body of `POST /admin/replay`, which the CLI also builds. */
export interface ReplayRequest {
  readonly options: ReplayOptions;
  readonly selection: Selection;
  readonly stream: boolean;
}

/** Parses and checks a replay request (a bad one throws SY_ERR_INVALID_REQUEST naming the field). */
export function parseReplayRequest(runtime: Runtime, body: JsonObject): ReplayRequest {
  for (const k of Object.keys(body))
    if (!KEYS.has(k))
      bad(`unknown field "${k.slice(0, 64)}"; use ${[...KEYS].join(', ')}`, k.slice(0, 64));
  const candidate = parseCandidate(runtime, body['candidate']);
  const minCosine = body['min_cosine'] ?? 0.99;
  if (typeof minCosine !== 'number' || !(minCosine >= -1 && minCosine <= 1))
    bad('"min_cosine" must be a number from -1 to 1', 'min_cosine');
  return {
    options: {
      log: bool(body['log'], 'log'),
      timeoutMs: int(body['timeout_ms'], 'timeout_ms', 1, 600_000, 30_000),
      minCosine,
      ...(candidate === undefined ? {} : { candidate }),
    },
    selection: parseSelection(body),
    stream: bool(body['stream'], 'stream'),
  };
}

/**
 * Selects the records and replays them one at a time, oldest first, calling `progress` after
 * each; resolves with the report, or undefined when `signal` fired (the caller left).
 */
export async function runReplay(
  runtime: Runtime,
  req: ReplayRequest,
  signal: AbortSignal,
  progress: (done: number, total: number) => void,
): Promise<JsonObject | undefined> {
  const records = await select(runtime, req.selection);
  const entries: ReplayEntry[] = [];
  for (const r of records) {
    if (signal.aborted) return undefined;
    entries.push(
      typeof r === 'string'
        ? { id: r, skipped: 'not_found' }
        : await replayRecord(runtime, r, req.options, signal),
    );
    progress(entries.length, records.length);
  }
  const c = req.options.candidate;
  return replayReportJson(
    entries,
    c === undefined
      ? { model: null }
      : { model: c.model, version: c.version ?? null, replaces: c.replaces },
  );
}
