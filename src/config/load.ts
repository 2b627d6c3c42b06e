import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
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

function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => `${formatPath([...issue.path, k])}: unknown key`).join('\n  - ');
    }
    return `${formatPath(issue.path)}: ${issue.message}`;
  });
}

/** Parses and validates config text. Throws ConfigError with every problem and its path. */
export function parseConfig(text: string, source: string, dir: string): ConfigSnapshot {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0)
    throw new ConfigError(
      source,
      doc.errors.map((e) => e.message),
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
  for (const [modelName, model] of Object.entries(config.models)) {
    if (model.backend === 'onnx') continue;
    const key = secret(model.api_key, `models.${modelName}.api_key`);
    if (key !== undefined) modelKeys.set(modelName, key);
  }
  if (problems.length > 0) throw new ConfigError(source, problems);
  return {
    config: deepFreeze(config),
    secrets: Object.freeze({
      keySecret: keySecret === undefined ? undefined : Buffer.from(keySecret),
      modelKeys,
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
