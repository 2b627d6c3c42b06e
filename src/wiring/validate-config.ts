import { constants } from 'node:fs';
import { access, open, readdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { onnxOperations } from '../backends/onnx/onnx-backend.js';
import type { ModelCard } from '../backends/onnx/model-card.js';
import { scanStore, selectVersions, type StoredVersion } from '../backends/onnx/model-store.js';
import { ANTHROPIC_OPERATIONS } from '../backends/http/anthropic.js';
import { KSERVE_OPERATIONS } from '../backends/http/kserve.js';
import { ConfigError, loadConfigFile, resolveSecret, type ConfigSnapshot } from '../config/load.js';
import type { OnnxModelConfig } from '../config/schema.js';
import type { DeepReadonly } from '../config/deep-freeze.js';
import type { Operation } from '../contracts/backend.js';
import type { ExperimentRecord, ExperimentSpec } from '../contracts/registry-store.js';
import type { ModelInfo } from '../contracts/stage.js';
import { systemClock } from '../core/clock.js';
import { compileJourneys, type CompileResult } from '../orchestrator/compile.js';
import { Router } from '../orchestrator/router.js';
import { journeyOperations } from '../pipeline/journey-invoker.js';
import { specProblems } from '../release/experiment-spec.js';
import { pinnedKey } from '../release/release-host.js';
import { allocate } from '../release/slot-table.js';
import { readShardHeader } from '../retrieval/shard-files.js';

/**
 * One validation (#14): everything `serve` would refuse, found without starting anything.
 * `switchyard config check`, `startGateway` and every reload run it, so the three can never
 * disagree; the runtime build compiles journeys from the same pieces (`describeModels`,
 * `compileConfigJourneys`). It reads the files the config names (model stores and their cards,
 * SQLite files, persisted vector shards, key files) and opens no connection: a PostgreSQL or Redis
 * that is down is an outage the gateway rides out, not a config problem. Every problem is
 * `<config path>: <message>`, like a ConfigError's.
 */

/** What a model serves, as journeys and fallbacks see it, read without starting it. */
export interface ModelShape {
  /** The backend's operations (chat, embeddings, infer). */
  readonly operations: readonly Operation[];
  /** What journey stages may ask of it: its operations, and classify when it labels text. */
  readonly journeyOperations: ModelInfo['operations'];
  /** False when the model's store could not be read: checks that need its operations skip it. */
  readonly known: boolean;
}

export interface ModelShapes {
  readonly models: ReadonlyMap<string, ModelShape>;
  readonly problems: readonly string[];
}

/** What `switchyard config check` shows: the snapshot when the file parsed, and every problem. */
export interface ConfigCheck {
  /** Absolute path of the file. */
  readonly source: string;
  readonly snapshot?: ConfigSnapshot;
  readonly problems: readonly string[];
}

const ALL_OPERATIONS: ModelShape = {
  operations: ['chat', 'embeddings', 'infer'],
  journeyOperations: new Set(['chat', 'embeddings', 'infer', 'classify']),
  known: false,
};

/** Loads and validates a config file; never throws for a problem of the config. */
export async function checkConfigFile(path: string): Promise<ConfigCheck> {
  let snapshot: ConfigSnapshot;
  try {
    snapshot = await loadConfigFile(path);
  } catch (err) {
    if (err instanceof ConfigError) return { source: err.source, problems: err.problems };
    throw err;
  }
  return { source: snapshot.source, snapshot, problems: await validateConfig(snapshot) };
}

/** Loads a config file for `serve` and reload: the snapshot, or a ConfigError with every problem. */
export async function loadValidConfig(path: string): Promise<ConfigSnapshot> {
  const snapshot = await loadConfigFile(path);
  const problems = await validateConfig(snapshot);
  if (problems.length > 0) throw new ConfigError(snapshot.source, problems);
  return snapshot;
}

/** Every problem of a parsed snapshot beyond its schema and secrets (which `parseConfig` checks). */
export async function validateConfig(snap: ConfigSnapshot): Promise<string[]> {
  const shapes = await describeModels(snap);
  return [
    ...shapes.problems,
    ...checkFallbacks(snap, shapes.models),
    ...checkModes(snap, shapes.models),
    ...compileConfigJourneys(snap, shapes.models, new Router(systemClock)).problems,
    ...checkExperiments(snap),
    ...checkSigningKeys(snap),
    ...checkTracingHeaders(snap),
    ...checkTree(snap),
    ...(await checkFiles(snap)),
  ];
}

/**
 * The gateway tree (#17): a node's jurisdiction agrees with the residency config, and the
 * jurisdictions models name are declared there (data tagged with an undeclared one goes nowhere).
 */
export function checkTree(snap: ConfigSnapshot): string[] {
  const problems: string[] = [];
  const { node, privacy, models, auth } = snap.config;
  const declared = (j: string): boolean => j in privacy.jurisdictions;
  const pj = privacy.node.jurisdiction;
  if (node.jurisdiction !== undefined && pj !== undefined && pj !== node.jurisdiction)
    problems.push(
      `node.jurisdiction: "${node.jurisdiction}" differs from privacy.node.jurisdiction "${pj}"`,
    );
  if (node.jurisdiction !== undefined && !declared(node.jurisdiction))
    problems.push(
      `node.jurisdiction: unknown jurisdiction "${node.jurisdiction}" (declare it under privacy.jurisdictions)`,
    );
  for (const [name, mc] of Object.entries(models))
    if (mc.jurisdiction !== undefined && !declared(mc.jurisdiction))
      problems.push(
        `models.${name}.jurisdiction: unknown jurisdiction "${mc.jurisdiction}" (declare it under privacy.jurisdictions)`,
      );
  const ids = new Set<string>();
  auth.service_keys.forEach((k, i) => {
    if (ids.has(k.id)) problems.push(`auth.service_keys[${i}].id: "${k.id}" is listed twice`);
    ids.add(k.id);
  });
  return problems;
}

/**
 * What each model serves: HTTP models as configured, in-process models from the card of the
 * version a request would get (their store is read, not loaded), so journeys compile the same
 * way whether or not a model has loaded yet.
 */
export async function describeModels(snap: ConfigSnapshot): Promise<ModelShapes> {
  const models = new Map<string, ModelShape>();
  const problems: string[] = [];
  for (const [name, mc] of Object.entries(snap.config.models)) {
    if (mc.backend !== 'onnx') {
      const ops =
        mc.backend === 'openai' || mc.backend === 'switchyard'
          ? mc.operations
          : mc.backend === 'anthropic'
            ? ANTHROPIC_OPERATIONS
            : KSERVE_OPERATIONS;
      models.set(name, shape(ops, undefined));
      continue;
    }
    const served = await servedVersion(name, mc, snap.dir, problems);
    models.set(
      name,
      served === undefined ? ALL_OPERATIONS : shape(onnxOperations(served.card), served.card),
    );
  }
  return { models, problems };
}

function shape(ops: readonly Operation[], card: ModelCard | undefined): ModelShape {
  return { operations: ops, journeyOperations: journeyOperations(ops, card), known: true };
}

/** The version of an in-process model a request without one gets; undefined when it has none. */
async function servedVersion(
  name: string,
  mc: DeepReadonly<OnnxModelConfig>,
  dir: string,
  problems: string[],
): Promise<StoredVersion | undefined> {
  const where = `models.${name}`;
  const store = resolve(dir, mc.store);
  try {
    if (!(await stat(store)).isDirectory()) {
      problems.push(`${where}.store: ${store} is not a directory`);
      return undefined;
    }
  } catch (err) {
    problems.push(`${where}.store: cannot read the model store ${store}: ${errCode(err)}`);
    return undefined;
  }
  const scan = await scanStore(store);
  const served = selectVersions(scan.versions, mc.version_policy);
  if (served.length === 0) {
    const present = scan.versions.map((v) => v.version);
    const why = [...scan.problems, ...scan.incomplete.map((v) => `version ${v} has no model.onnx`)];
    problems.push(
      present.length === 0
        ? `${where}.store: ${store} holds no version to serve (a directory with model.onnx)${why.length > 0 ? `: ${why.join('; ')}` : ''}`
        : `${where}.version_policy: selects none of the versions in the store (${present.join(', ')})`,
    );
    return undefined;
  }
  const wanted = mc.default_version;
  const pinned = served.find((v) => v.version === wanted);
  if (wanted !== undefined && pinned === undefined)
    problems.push(
      `${where}.default_version: version "${wanted}" is not served (the version policy serves ${served.map((v) => v.version).join(', ')})`,
    );
  return pinned ?? served.at(-1)!;
}

/** The operations `from` serves that `to` does not (a fallback or substitute must serve them all). */
function missingOps(models: ReadonlyMap<string, ModelShape>, from: string, to: string): string[] {
  const a = models.get(from);
  const b = models.get(to);
  if (a === undefined || b === undefined || !a.known || !b.known) return [];
  return a.operations.filter((op) => !b.operations.includes(op));
}

/** A fallback answers in place of its model, so it must serve every operation the model does. */
function checkFallbacks(snap: ConfigSnapshot, models: ReadonlyMap<string, ModelShape>): string[] {
  const problems: string[] = [];
  for (const [name, mc] of Object.entries(snap.config.models))
    mc.fallback.forEach((target, i) => {
      const missing = missingOps(models, name, target);
      if (missing.length > 0)
        problems.push(
          `models.${name}.fallback[${i}]: ${target} does not serve ${missing.join(', ')}`,
        );
    });
  return problems;
}

/** Mode switches name models and journeys: each must exist, and a substitute must serve what it replaces. */
function checkModes(snap: ConfigSnapshot, models: ReadonlyMap<string, ModelShape>): string[] {
  const problems: string[] = [];
  for (const mode of ['surge', 'emergency'] as const) {
    const sw = snap.config.modes[mode].switches;
    const base = `modes.${mode}.switches`;
    for (const [from, to] of Object.entries(sw.model_substitutes)) {
      const where = `${base}.model_substitutes.${from}`;
      const unknown = [from, to].find((m) => !models.has(m));
      const missing = missingOps(models, from, to);
      if (unknown !== undefined) problems.push(`${where}: unknown model "${unknown}"`);
      else if (missing.length > 0)
        problems.push(`${where}: ${to} does not serve ${missing.join(', ')}`);
    }
    sw.journeys_disabled.forEach((j, i) => {
      if (!(j in snap.config.journeys))
        problems.push(`${base}.journeys_disabled[${i}]: unknown journey "${j}"`);
    });
  }
  return problems;
}

/**
 * The services journeys may use, as the wiring opens them: personalization (feature store and
 * policy module) is always opened; the vector retriever when a collection is configured.
 */
function journeyServices(snap: ConfigSnapshot) {
  return {
    features: true,
    policy: true,
    retriever: Object.keys(snap.config.vectors.collections).length > 0,
  };
}

/** Compiles a snapshot's journeys against what its models serve (the runtime build uses this too). */
export function compileConfigJourneys(
  snap: ConfigSnapshot,
  models: ReadonlyMap<string, ModelShape>,
  router: Router,
): CompileResult {
  return compileJourneys(snap.config.journeys, {
    models: (name) => {
      const m = models.get(name);
      return m === undefined ? undefined : { operations: m.journeyOperations };
    },
    services: journeyServices(snap),
    collections: new Set(Object.keys(snap.config.vectors.collections)),
    router,
  });
}

/**
 * Experiments in config are created in the state store at start, in order: each must pass the
 * release manager's checks and find room in its layer. (Room taken by experiments created through
 * the admin API is state, not config, and is not known here.)
 */
function checkExperiments(snap: ConfigSnapshot): string[] {
  const { experiments, state, release } = snap.config;
  if (experiments.length === 0) return [];
  if (state === undefined)
    return [
      'experiments: experiments are kept in the state store; configure state (sqlite or postgres)',
    ];
  const problems: string[] = [];
  const seen = new Map<string, number>();
  const created: ExperimentRecord[] = [];
  experiments.forEach((e, i) => {
    const spec = e as unknown as ExperimentSpec;
    const where = `experiments[${i}]`;
    const first = seen.get(spec.id);
    if (first !== undefined) {
      problems.push(
        `${where}.id: experiment "${spec.id}" is already declared at experiments[${first}]`,
      );
      return;
    }
    seen.set(spec.id, i);
    const own = specProblems(spec);
    if (own.length > 0) {
      problems.push(...own.map((p) => `${where}: ${p}`));
      return;
    }
    if (spec.kind === 'shadow') return;
    const holdout = release.layers[spec.layer]?.holdout ?? 0;
    const allocation = allocate(spec.layer, Math.round(spec.traffic * 100), created, holdout);
    if (allocation === undefined) {
      problems.push(
        `${where}.traffic: layer "${spec.layer}" has no free ${spec.traffic}% (the experiments before it${holdout > 0 ? ` and the layer's ${holdout}% holdout` : ''} take the rest)`,
      );
      return;
    }
    created.push({
      spec,
      status: 'running',
      allocation,
      step: 0,
      stepSince: 0,
      reason: '',
      revision: 0,
      createdAt: 0,
      updatedAt: 0,
    });
  });
  return problems;
}

/** Pinned signing keys are read at start (release management and the registry CLI verify with them). */
/** Tracing export headers taken from the environment or a file must be readable (#15). */
function checkTracingHeaders(snap: ConfigSnapshot): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(snap.config.tracing.otlp.headers)) {
    if (typeof value === 'string') continue;
    try {
      resolveSecret(value, snap.dir);
    } catch (err) {
      problems.push(
        `tracing.otlp.headers.${name}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  return problems;
}

function checkSigningKeys(snap: ConfigSnapshot): string[] {
  const problems: string[] = [];
  snap.config.release.signing_keys.forEach((k, i) => {
    const where = `release.signing_keys[${i}].${k.file !== undefined ? 'file' : 'public_key'}`;
    try {
      pinnedKey(k, snap.dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push(
        code !== undefined && !code.startsWith('ERR_') // a file error (ENOENT...), not OpenSSL's
          ? `${where}: cannot read ${resolve(snap.dir, k.file ?? '')}: ${code}`
          : `${where}: not a usable Ed25519 public key (${err instanceof Error ? err.message : String(err)})`,
      );
    }
  });
  return problems;
}

/** The files and directories the gateway opens at start: SQLite stores and vector shards. */
async function checkFiles(snap: ConfigSnapshot): Promise<string[]> {
  const { state, features, privacy, vectors } = snap.config;
  const at = (p: string): string => resolve(snap.dir, p);
  const found: (string | undefined)[] = [];
  // Every SQLite store creates the directory of its file (a fresh checkout starts).
  if (state !== undefined && 'sqlite' in state)
    found.push(await checkSqliteFile('state.sqlite', at(state.sqlite), true));
  else found.push(await checkSqliteFile('audit.sqlite', at(snap.config.audit.sqlite), true));
  if (features.store.kind === 'embedded' && features.store.sqlite !== undefined)
    found.push(await checkSqliteFile('features.store.sqlite', at(features.store.sqlite), true));
  if (privacy.consent_sqlite !== undefined)
    found.push(await checkSqliteFile('privacy.consent_sqlite', at(privacy.consent_sqlite), true));
  const il = snap.config.inference_log;
  if (il.enabled && il.store === 'sqlite')
    found.push(await checkSqliteFile('inference_log.path', at(il.path), true));
  const problems = found.filter((p): p is string => p !== undefined);
  if (Object.keys(vectors.collections).length > 0 && vectors.data_dir !== undefined)
    problems.push(...(await checkShards(snap, at(vectors.data_dir))));
  return problems;
}

const SQLITE_MAGIC = 'SQLite format 3\u0000';

/** A SQLite file the gateway opens for writing: a database (or an empty file), or one it can create. */
async function checkSqliteFile(
  where: string,
  file: string,
  createsDir: boolean,
): Promise<string | undefined> {
  let size: number;
  try {
    const st = await stat(file);
    if (!st.isFile()) return `${where}: ${file} is not a file`;
    size = st.size;
  } catch (err) {
    if (errCode(err) !== 'ENOENT' && errCode(err) !== 'ENOTDIR')
      return `${where}: cannot use ${file}: ${errCode(err)}`;
    return checkDirectory(where, dirname(file), createsDir);
  }
  try {
    await access(file, constants.R_OK | constants.W_OK);
  } catch (err) {
    return `${where}: ${file} is not writable: ${errCode(err)}`;
  }
  if (size > 0) {
    const head = Buffer.alloc(SQLITE_MAGIC.length);
    const fh = await open(file, 'r');
    try {
      await fh.read(head, 0, head.length, 0);
    } finally {
      await fh.close();
    }
    if (head.toString('latin1') !== SQLITE_MAGIC)
      return `${where}: ${file} is not a SQLite database`;
  }
  // The write-ahead log lives beside the database.
  return checkDirectory(where, dirname(file), false);
}

/** A directory the gateway writes in: it exists (or, with `creates`, can be made) and is writable. */
async function checkDirectory(
  where: string,
  dir: string,
  creates: boolean,
): Promise<string | undefined> {
  for (let d = dir; ; d = dirname(d)) {
    try {
      const st = await stat(d);
      if (!st.isDirectory()) return `${where}: ${d} is not a directory`;
      if (d !== dir && !creates) return `${where}: directory ${dir} does not exist`;
      await access(d, constants.W_OK);
      return undefined;
    } catch (err) {
      const code = errCode(err);
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
        return `${where}: ${d} is not writable: ${code}`;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(d) === d)
        return `${where}: cannot use ${dir}: ${code}`;
    }
  }
}

/**
 * Persisted local shards must match their collection: a shard written with other dimensions or
 * another metric cannot be opened. A shard split earlier persists as children `<id>.<n>`.
 */
async function checkShards(snap: ConfigSnapshot, dataDir: string): Promise<string[]> {
  const problem = await checkDirectory('vectors.data_dir', dataDir, true);
  if (problem !== undefined) return [problem];
  const problems: string[] = [];
  const node = snap.config.privacy.node.id;
  for (const [name, c] of Object.entries(snap.config.vectors.collections)) {
    const dir = join(dataDir, name);
    const present = await readdir(dir).catch(() => [] as string[]);
    for (const [i, s] of c.shards.entries()) {
      if ((s.node ?? node) !== node) continue;
      const where = `vectors.collections.${name}`;
      for (const id of present.filter((p) => p === s.id || p.startsWith(`${s.id}.`))) {
        try {
          const h = (await readShardHeader(join(dir, id)))?.header;
          if (h === undefined) continue;
          const field = h.dims !== c.dims ? 'dims' : h.metric !== c.metric ? 'metric' : undefined;
          if (field !== undefined)
            problems.push(
              `${where}.${field}: shard ${id} in ${join(dir, id)} is ${h.dims}-d ${h.metric}, configured ${c.dims}-d ${c.metric}`,
            );
        } catch (err) {
          problems.push(
            `${where}.shards[${i}]: cannot read the persisted shard ${join(dir, id)}: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
      }
    }
  }
  return problems;
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}
