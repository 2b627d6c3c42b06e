import type { ModelInfo, Stage } from '../contracts/stage.js';
import { PathCompiler } from './paths.js';
import type { Router } from './router.js';
import { subId, type BuildContext, type ModelOp, type StageKind } from './stage-kit.js';
import { STAGE_KINDS } from './stages/index.js';

/** A journey as the config describes it (`journeys.<name>`). */
export interface JourneySpec {
  readonly description?: string | undefined;
  readonly class: string;
  readonly deadline_ms?: number | undefined;
  readonly stages: readonly unknown[];
}

export interface CompiledStage {
  readonly stage: Stage;
  readonly index: number;
  /** Where a `continue` without a target goes; undefined ends the journey with `last`. */
  readonly next: string | undefined;
  /** Where a `fail` goes; undefined fails the journey. */
  readonly onFail: string | undefined;
}

export interface CompiledJourney {
  readonly name: string;
  readonly trafficClass: string;
  readonly deadlineMs: number | undefined;
  readonly entry: string;
  readonly stages: ReadonlyMap<string, CompiledStage>;
  /** Every model the journey's stages name. */
  readonly models: readonly string[];
}

export interface CompileOptions {
  /** What each model serves (compiling needs nothing else of it). */
  readonly models: (name: string) => Pick<ModelInfo, 'operations'> | undefined;
  readonly services: {
    readonly features: boolean;
    readonly retriever: boolean;
    readonly policy: boolean;
  };
  /** The vector collections `retrieve` stages may search; absent: not checked. */
  readonly collections?: ReadonlySet<string>;
  readonly router: Router;
  readonly kinds?: ReadonlyMap<string, StageKind>;
}

export interface CompileResult {
  readonly journeys: ReadonlyMap<string, CompiledJourney>;
  /** `journeys.support.stages[2].branch.cases[0].to: unknown stage "answr"`, ... */
  readonly problems: readonly string[];
}

const ID = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
const COMMON = new Set(['id', 'next', 'on_fail']);
const SERVICE_NAMES = {
  features: 'a feature store (features:)',
  retriever: 'a vector retriever (vectors:)',
  policy: 'the privacy policy module (privacy:)',
} as const;

/**
 * Compiles and validates every journey once, at config load: unknown stage kinds, bad stage
 * bodies, unknown models, dangling references, cycles and unreachable stages are all reported,
 * each with its config path. A journey with any problem is not compiled.
 */
export function compileJourneys(
  specs: Readonly<Record<string, JourneySpec>>,
  options: CompileOptions,
): CompileResult {
  const problems: string[] = [];
  const journeys = new Map<string, CompiledJourney>();
  for (const [name, spec] of Object.entries(specs)) {
    const before = problems.length;
    const compiled = compileJourney(name, spec, options, (where, message) => {
      const p = `${where}: ${message}`;
      if (!problems.includes(p)) problems.push(p);
    });
    if (problems.length === before && compiled !== undefined) journeys.set(name, compiled);
  }
  return { journeys, problems };
}

interface RawStage {
  readonly id: string;
  readonly kind: string;
  readonly body: unknown;
  readonly next: unknown;
  readonly onFail: unknown;
  readonly where: string;
}

function parseRaw(
  raw: unknown,
  where: string,
  defaultId: string,
  kinds: ReadonlyMap<string, StageKind>,
  problem: (where: string, message: string) => void,
  allowEdges: boolean,
): RawStage | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problem(where, 'a stage must be an object such as { id: intent, classify: { model: intent } }');
    return undefined;
  }
  const obj = raw as Record<string, unknown>;
  const kindKeys = Object.keys(obj).filter((k) => !COMMON.has(k));
  if (kindKeys.length !== 1) {
    problem(
      where,
      kindKeys.length === 0
        ? `a stage needs one kind: ${[...kinds.keys()].join(', ')}`
        : `a stage has exactly one kind, found ${kindKeys.join(', ')}`,
    );
    return undefined;
  }
  const kind = kindKeys[0]!;
  if (!kinds.has(kind)) {
    problem(
      `${where}.${kind}`,
      `unknown stage kind "${kind}" (known: ${[...kinds.keys()].join(', ')})`,
    );
    return undefined;
  }
  const id = obj['id'] ?? defaultId;
  if (typeof id !== 'string' || !ID.test(id)) {
    problem(`${where}.id`, 'must start with a letter and use letters, digits, "_" or "-" (max 64)');
    return undefined;
  }
  if (!allowEdges && (obj['next'] !== undefined || obj['on_fail'] !== undefined)) {
    problem(where, 'an inline sub-stage cannot have next or on_fail');
  }
  return { id, kind, body: obj[kind], next: obj['next'], onFail: obj['on_fail'], where };
}

function compileJourney(
  name: string,
  spec: JourneySpec,
  options: CompileOptions,
  problem: (where: string, message: string) => void,
): CompiledJourney | undefined {
  const kinds = options.kinds ?? STAGE_KINDS;
  const base = `journeys.${name}.stages`;
  const raws: RawStage[] = [];
  spec.stages.forEach((s, i) => {
    const kindName =
      s !== null && typeof s === 'object' ? Object.keys(s).find((k) => !COMMON.has(k)) : undefined;
    const r = parseRaw(s, `${base}[${i}]`, kindName ?? `stage${i}`, kinds, problem, true);
    if (r !== undefined) raws.push(r);
  });
  if (raws.length !== spec.stages.length) return undefined;

  // Every id, sub-stages included, is known before any path is compiled.
  const ids = new Map<string, string>();
  const claim = (id: string, where: string): void => {
    const prev = ids.get(id);
    if (prev !== undefined) problem(`${where}.id`, `duplicate stage id "${id}" (also at ${prev})`);
    else ids.set(id, where);
  };
  const collect = (r: RawStage): void => {
    claim(r.id, r.where);
    const subs = kinds.get(r.kind)!.subs?.(r.body) ?? [];
    subs.forEach((s, i) => {
      const w = `${r.where}.${r.kind}${s.where}`;
      const sub = parseRaw(s.spec, w, subId(r.id, s.spec, i), kinds, problem, false);
      if (sub !== undefined) collect(sub);
    });
  };
  raws.forEach(collect);
  const topIds = new Set(raws.map((r) => r.id));

  const journeyModels = new Set<string>();
  const paths = new PathCompiler(new Set(ids.keys()), problem);
  const build = (r: RawStage): Stage | undefined => {
    const kind = kinds.get(r.kind)!;
    const where = `${r.where}.${r.kind}`;
    const parsed = kind.schema.safeParse(r.body ?? {});
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        const path = issue.path
          .map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))
          .join('');
        const msg =
          issue.code === 'unrecognized_keys'
            ? `unknown key ${issue.keys.map((k) => `"${k}"`).join(', ')}`
            : issue.message;
        problem(`${where}${path}`, msg);
      }
      return undefined;
    }
    const ctx: BuildContext = {
      journey: name,
      id: r.id,
      where,
      paths,
      router: options.router,
      journeyModels,
      problem,
      model: (model, w, op) => checkModel(options, model, w, op, problem, journeyModels),
      needs: (service, w) => {
        if (!options.services[service])
          problem(w, `this stage needs ${SERVICE_NAMES[service]}, which is not configured`);
      },
      collection: (c, w) => {
        const known = options.collections;
        if (options.services.retriever && known !== undefined && !known.has(c))
          problem(w, `unknown collection "${c}" (collections: ${[...known].join(', ')})`);
      },
      sub: (subSpec, w, defaultId) => {
        const sub = parseRaw(subSpec, w, defaultId, kinds, problem, false);
        const built = sub === undefined ? undefined : build(sub);
        return built ?? brokenStage(defaultId);
      },
    };
    // Jumps of sub-stages (a downgrade's goto inside a fallback) are edges of their top stage.
    for (const ref of kind.refs?.(parsed.data) ?? []) {
      if (!topIds.has(ref.id)) problem(`${where}${ref.where}`, danglingMessage(ref.id, ids));
      else edgeSink.push({ to: ref.id, where: `${where}${ref.where}` });
    }
    return kind.build(parsed.data, ctx);
  };

  let edgeSink: { to: string; where: string }[] = [];
  const compiled = new Map<string, CompiledStage>();
  const edges = new Map<string, { to: string; where: string }[]>();
  raws.forEach((r, index) => {
    edgeSink = [];
    const stage = build(r);
    if (stage === undefined) return;
    const kind = kinds.get(r.kind)!;
    const out: { to: string; where: string }[] = [];
    let next: string | undefined;
    if (r.next !== undefined) {
      if (typeof r.next !== 'string' || !topIds.has(r.next))
        problem(`${r.where}.next`, danglingMessage(idText(r.next), ids));
      else next = r.next;
    } else if (!kind.terminal) next = raws[index + 1]?.id;
    if (next !== undefined) out.push({ to: next, where: `${r.where}.next` });
    let onFail: string | undefined;
    if (r.onFail !== undefined) {
      if (typeof r.onFail !== 'string' || !topIds.has(r.onFail))
        problem(`${r.where}.on_fail`, danglingMessage(idText(r.onFail), ids));
      else {
        onFail = r.onFail;
        out.push({ to: onFail, where: `${r.where}.on_fail` });
      }
    }
    out.push(...edgeSink);
    edges.set(r.id, out);
    compiled.set(r.id, { stage, index, next, onFail });
  });
  if (compiled.size !== raws.length) return undefined;

  checkCycles(raws, edges, problem);
  // Reachability from the first stage.
  const seen = new Set<string>([raws[0]!.id]);
  const queue = [raws[0]!.id];
  while (queue.length > 0) {
    for (const e of edges.get(queue.shift()!) ?? []) {
      if (!seen.has(e.to)) {
        seen.add(e.to);
        queue.push(e.to);
      }
    }
  }
  for (const r of raws)
    if (!seen.has(r.id))
      problem(
        r.where,
        `stage "${r.id}" is unreachable: no stage continues, branches or falls to it`,
      );

  return {
    name,
    trafficClass: spec.class,
    deadlineMs: spec.deadline_ms,
    entry: raws[0]!.id,
    stages: compiled,
    models: [...journeyModels],
  };
}

function idText(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function danglingMessage(id: string, ids: ReadonlyMap<string, string>): string {
  if (ids.has(id))
    return `stage "${id}" is an inline sub-stage; only top-level stages can be targets`;
  return `unknown stage "${id}" (stages: ${[...ids.keys()].join(', ')})`;
}

function checkCycles(
  raws: readonly RawStage[],
  edges: ReadonlyMap<string, readonly { to: string; where: string }[]>,
  problem: (where: string, message: string) => void,
): void {
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const reported = new Set<string>();
  const visit = (id: string): void => {
    state.set(id, 1);
    stack.push(id);
    for (const e of edges.get(id) ?? []) {
      const s = state.get(e.to);
      if (s === 1) {
        const cycle = [...stack.slice(stack.indexOf(e.to)), e.to];
        const key = [...cycle].sort().join('|');
        if (!reported.has(key)) {
          reported.add(key);
          problem(
            e.where,
            `cycle: ${cycle.join(' → ')} (journeys are acyclic so every request ends)`,
          );
        }
      } else if (s === undefined) visit(e.to);
    }
    stack.pop();
    state.set(id, 2);
  };
  for (const r of raws) if (!state.has(r.id)) visit(r.id);
}

function checkModel(
  options: CompileOptions,
  model: string,
  where: string,
  op: ModelOp | readonly ModelOp[],
  problem: (where: string, message: string) => void,
  journeyModels: Set<string>,
): void {
  const info = options.models(model);
  if (info === undefined) {
    problem(where, `unknown model "${model}"`);
    return;
  }
  journeyModels.add(model);
  const ops = typeof op === 'string' ? [op] : op;
  if (!ops.some((o) => info.operations.has(o)))
    problem(
      where,
      `model "${model}" does not serve ${ops.join(' or ')} (it serves ${[...info.operations].join(', ')})`,
    );
}

function brokenStage(id: string): Stage {
  return {
    id,
    kind: 'invalid',
    run: () => Promise.reject(new Error(`stage ${id} failed to compile`)),
  };
}
