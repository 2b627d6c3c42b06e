import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isMap, isNode, isScalar, isSeq, parseDocument, type YAMLError } from 'yaml';
import type { z } from 'zod';
import { deepFreeze, type DeepReadonly } from './deep-freeze.js';
import { configSchema, type Config, type SecretRef } from './schema.js';

/** A configuration problem: control-plane errors fail fast and list every offending path. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`${source}: invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export type FrozenConfig = DeepReadonly<Config>;

/** Secrets resolved from env or files. Kept apart from the config so it can be logged safely. */
export interface Secrets {
  readonly keySecret: Buffer | undefined;
  /** Upstream API keys by model name. */
  readonly modelKeys: ReadonlyMap<string, string>;
  /** Keys of vector shards held by other nodes, by `<collection>/<shard id>`. */
  readonly shardKeys: ReadonlyMap<string, string>;
  /** Service keys child gateways sign tenant assertions with (`auth.service_keys`, #17), by id. */
  readonly serviceKeys: ReadonlyMap<string, Buffer>;
  /** The service key each `backend: switchyard` model signs with, by model name (#17). */
  readonly parentKeys: ReadonlyMap<string, string>;
}

/** One validated, deep-frozen configuration and everything resolved from it. */
export interface ConfigSnapshot {
  readonly config: FrozenConfig;
  readonly secrets: Secrets;
  /** Absolute path of the file, or `<inline>`. */
  readonly source: string;
  /** Directory that relative paths in the config resolve against. */
  readonly dir: string;
  /** sha256 of the source text: says which config served a request. */
  readonly digest: string;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(root)' : out;
}

function formatIssues(
  issues: readonly z.core.$ZodIssue[],
  base: readonly PropertyKey[] = [],
): string[] {
  return issues.flatMap((issue) => {
    const path = [...base, ...issue.path];
    if (issue.code === 'unrecognized_keys')
      return issue.keys.map((k) => `${formatPath([...path, k])}: unknown key`);
    if (issue.code === 'invalid_union') {
      const branch = closestBranch(issue.errors);
      if (branch !== undefined) return formatIssues(branch, path);
    }
    return [`${formatPath(path)}: ${issue.message}`];
  });
}

/**
 * The alternative of a union the value was meant to be, when exactly one comes close: its
 * problems then name the field that is wrong (`state.sqlite: expected string`) instead of the
 * union's "Invalid input". A branch whose literal, type or keys do not fit at all is far.
 */
function closestBranch(
  branches: readonly (readonly z.core.$ZodIssue[])[],
): readonly z.core.$ZodIssue[] | undefined {
  const FAR = 1_000;
  const distance = (issues: readonly z.core.$ZodIssue[]): number =>
    issues.reduce(
      (d, i) =>
        d +
        (i.code === 'invalid_value' ||
        (i.path.length === 0 && (i.code === 'invalid_type' || i.code === 'unrecognized_keys'))
          ? FAR
          : 1),
      0,
    );
  const scored = branches.map((b) => ({ b, d: distance(b) })).sort((x, y) => x.d - y.d);
  const [best, next] = scored;
  if (best === undefined || best.d >= FAR || (next !== undefined && next.d === best.d))
    return undefined;
  return best.b;
}

/** The config path of the node at `offset` of a YAML document (`models.chat`). */
function yamlPathAt(node: unknown, offset: number, path: (string | number)[] = []): string {
  if (isMap(node)) {
    for (const pair of node.items) {
      const start = isNode(pair.key) ? pair.key.range?.[0] : undefined;
      const end = isNode(pair.value)
        ? pair.value.range?.[2]
        : isNode(pair.key)
          ? pair.key.range?.[2]
          : undefined;
      if (start !== undefined && end !== undefined && offset >= start && offset <= end)
        return yamlPathAt(pair.value, offset, [
          ...path,
          isScalar(pair.key) ? String(pair.key.value) : '?',
        ]);
    }
  } else if (isSeq(node)) {
    for (const [i, item] of node.items.entries()) {
      const range = isNode(item) ? item.range : undefined;
      if (range != null && offset >= range[0] && offset <= range[2])
        return yamlPathAt(item, offset, [...path, i]);
    }
  }
  return formatPath(path);
}

/** A YAML problem: its first line (with line and column), and the key's path for a duplicate. */
function yamlProblem(e: YAMLError, contents: unknown): string {
  const message = e.message.split('\n')[0]!.replace(/:$/, '');
  return e.code === 'DUPLICATE_KEY' ? `${yamlPathAt(contents, e.pos[0])}: ${message}` : message;
}

/** Parses and validates config text. Throws ConfigError with every problem and its path. */
export function parseConfig(text: string, source: string, dir: string): ConfigSnapshot {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0)
    throw new ConfigError(
      source,
      doc.errors.map((e) => yamlProblem(e, doc.contents)),
    );
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (err) {
    throw new ConfigError(source, [err instanceof Error ? err.message : String(err)]);
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(source, formatIssues(parsed.error.issues));
  const config = parsed.data;
  const problems: string[] = [];
  const secret = (ref: SecretRef | undefined, path: string): string | undefined => {
    if (ref === undefined) return undefined;
    try {
      return resolveSecret(ref, dir);
    } catch (err) {
      problems.push(`${path}: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  };
  const keySecret = secret(config.auth.secret, 'auth.secret');
  const modelKeys = new Map<string, string>();
  const serviceKeys = new Map<string, Buffer>();
  config.auth.service_keys.forEach((k, i) => {
    const v = secret(k.secret, `auth.service_keys[${i}].secret`);
    if (v !== undefined) serviceKeys.set(k.id, Buffer.from(v));
  });
  const parentKeys = new Map<string, string>();
  for (const [modelName, model] of Object.entries(config.models)) {
    if (model.backend === 'onnx') continue;
    if (model.backend === 'switchyard') {
      const v = secret(model.service_key.secret, `models.${modelName}.service_key.secret`);
      if (v !== undefined) parentKeys.set(modelName, v);
      continue;
    }
    const key = secret(model.api_key, `models.${modelName}.api_key`);
    if (key !== undefined) modelKeys.set(modelName, key);
  }
  const shardKeys = new Map<string, string>();
  for (const [collection, c] of Object.entries(config.vectors.collections))
    c.shards.forEach((shard, i) => {
      const key = secret(shard.api_key, `vectors.collections.${collection}.shards[${i}].api_key`);
      if (key !== undefined) shardKeys.set(`${collection}/${shard.id}`, key);
    });
  if (problems.length > 0) throw new ConfigError(source, problems);
  return {
    config: deepFreeze(config),
    secrets: Object.freeze({
      keySecret: keySecret === undefined ? undefined : Buffer.from(keySecret),
      modelKeys,
      shardKeys,
      serviceKeys,
      parentKeys,
    }),
    source,
    dir,
    digest: configDigest(text),
  };
}

/** A config file's digest: what logs, `config check` and the audit trail name a version by. */
export const configDigest = (text: string): string =>
  createHash('sha256').update(text).digest('hex').slice(0, 16);

export async function loadConfigFile(path: string): Promise<ConfigSnapshot> {
  const abs = resolve(path);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(abs, [
      `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    ]);
  }
  return parseConfig(text, abs, dirname(abs));
}

export function resolveSecret(ref: SecretRef, dir: string): string {
  if ('env' in ref) {
    const value = process.env[ref.env];
    if (value === undefined || value === '')
      throw new Error(`environment variable ${ref.env} is not set`);
    return value;
  }
  const file = resolve(dir, ref.file);
  let value: string;
  try {
    value = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new Error(
      `cannot read secret file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
  if (value === '') throw new Error(`secret file ${file} is empty`);
  return value;
}
