import type { Operation } from '../contracts/backend.js';
import type { JsonObject } from '../contracts/json.js';
import type { ConsentPurpose, DataTag, PolicyLabel } from '../contracts/policy.js';
import { isJsonObject, parseJson } from '../core/safe-json.js';

/**
 * The endpoints a batch may target, and the operation each line's model must serve (#16): those
 * of OpenAI's Batch API that answer in one JSON body. A `/v1/responses` line is a chat call (or a
 * Responses call passed through), run as the route runs it: `pipeline/responses-turn.ts`.
 */
export const BATCH_ENDPOINTS: Readonly<Record<string, Operation>> = {
  '/v1/chat/completions': 'chat',
  '/v1/embeddings': 'embeddings',
  '/v1/completions': 'completions',
  '/v1/moderations': 'moderations',
  '/v1/responses': 'chat',
};

/**
 * Where a batch keeps its output and error files' lifetime in seconds (`output_expires_after`, or
 * `batches.file_expires_after_s`); never shown.
 */
export const OUTPUT_EXPIRES_FIELD = 'switchyard_output_expires_after_s';

/**
 * Where a batch keeps the data its creator declared (the `x-switchyard-data-*` and
 * `x-switchyard-jurisdiction` headers of `POST /v1/batches`: label, purpose, user, jurisdiction);
 * every line runs under it, as a direct call runs under its headers. Never shown.
 */
export const DATA_FIELD = 'switchyard_data';

/** The declared data as a batch keeps it under `DATA_FIELD` (the tenant is the batch's own). */
export function keptData(d: DataTag): JsonObject {
  return {
    label: d.label,
    ...(d.purpose === undefined ? {} : { purpose: d.purpose }),
    ...(d.userId === undefined ? {} : { user: d.userId }),
    ...(d.jurisdiction === undefined ? {} : { jurisdiction: d.jurisdiction }),
  };
}

/**
 * The data a line runs under, as a direct call runs under its headers: what its batch's creator
 * declared (`keptData`), about the declared user, else the line's own `user` field.
 */
export function lineData(
  tenant: string,
  batch: JsonObject,
  line: BatchInputLine,
): { data?: readonly DataTag[] } {
  const d = batch[DATA_FIELD];
  if (!isJsonObject(d)) return {};
  const user = typeof d['user'] === 'string' ? d['user'] : line.body['user'];
  const tag: DataTag = {
    tenant,
    label: d['label'] as PolicyLabel,
    ...(typeof d['purpose'] === 'string' ? { purpose: d['purpose'] as ConsentPurpose } : {}),
    ...(typeof user === 'string' ? { userId: user } : {}),
    ...(typeof d['jurisdiction'] === 'string' ? { jurisdiction: d['jurisdiction'] } : {}),
  };
  return { data: [tag] };
}

/** The batch endpoint whose lines are Responses turns. */
export const RESPONSES_ENDPOINT = '/v1/responses';

/** One request line of a batch's input file. */
export interface BatchInputLine {
  /** 0-based position among the file's non-empty lines. */
  readonly index: number;
  /** 1-based line number in the file. */
  readonly line: number;
  readonly customId: string;
  readonly model: string;
  readonly body: JsonObject;
}

/** A validation error, as OpenAI's Batch object lists them (`line` is 1-based). */
export interface BatchLineError {
  readonly code: string;
  readonly message: string;
  readonly param: string | null;
  readonly line: number | null;
}

export interface ParsedBatchInput {
  readonly lines: BatchInputLine[];
  readonly errors: BatchLineError[];
}

/**
 * Parses a batch input file (JSONL: `{custom_id, method: "POST", url, body}` per line) for
 * `endpoint`. Every line is checked: JSON object, a unique non-empty `custom_id`, `url` equal to
 * the batch's endpoint, a `body` object with a `model`. At most `maxLines` lines. Blank lines are
 * skipped. A line asking to stream is taken: the runner answers it with an error line (a batch
 * line has one answer), and the rest of the batch runs.
 */
export function parseBatchInput(
  content: Buffer,
  endpoint: string,
  maxLines: number,
): ParsedBatchInput {
  const lines: BatchInputLine[] = [];
  const errors: BatchLineError[] = [];
  const seen = new Set<string>();
  const text = content.toString('utf8');
  const raw = text.split('\n');
  let index = 0;
  for (let n = 0; n < raw.length; n++) {
    const line = raw[n]!.trim();
    if (line === '') continue;
    if (index >= maxLines) {
      errors.push({
        code: 'too_many_lines',
        message: `the input file has more than ${maxLines} lines (batches.max_lines)`,
        param: null,
        line: n + 1,
      });
      break;
    }
    const bad = (code: string, message: string, param: string | null): void => {
      errors.push({ code, message, param, line: n + 1 });
    };
    let v: unknown;
    try {
      v = parseJson(line);
    } catch (err) {
      bad('invalid_json_line', `not a JSON object: ${String(err).slice(0, 200)}`, null);
      continue;
    }
    if (!isJsonObject(v)) {
      bad('invalid_json_line', 'not a JSON object', null);
      continue;
    }
    const customId = v['custom_id'];
    if (typeof customId !== 'string' || customId === '' || customId.length > 512) {
      bad('missing_required_parameter', 'custom_id must be a non-empty string', 'custom_id');
      continue;
    }
    if (seen.has(customId)) {
      bad(
        'duplicate_custom_id',
        `custom_id ${JSON.stringify(customId)} is used twice`,
        'custom_id',
      );
      continue;
    }
    seen.add(customId);
    if (v['method'] !== 'POST') {
      bad('invalid_method', 'method must be POST', 'method');
      continue;
    }
    if (v['url'] !== endpoint) {
      bad('mismatched_endpoint', `url must be the batch's endpoint ${endpoint}`, 'url');
      continue;
    }
    const body = v['body'];
    if (!isJsonObject(body) || typeof body['model'] !== 'string' || body['model'] === '') {
      bad('missing_required_parameter', 'body must be an object with a model', 'body.model');
      continue;
    }
    lines.push({ index: index++, line: n + 1, customId, model: body['model'], body });
  }
  if (lines.length === 0 && errors.length === 0)
    errors.push({
      code: 'empty_file',
      message: 'the input file has no lines',
      param: null,
      line: null,
    });
  return { lines, errors };
}
