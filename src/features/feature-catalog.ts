import type {
  FeatureDefinition,
  FeatureEntry,
  FeatureIssue,
  FeatureValue,
  FeatureWrite,
} from '../contracts/feature-source.js';
import { syError } from '../core/errors.js';

const MAX_ID = 256;
const DEFAULT_MAX_STRING = 4_096;
const JURISDICTION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** How many problems an error message lists before "and N more". */
const SHOWN_ISSUES = 10;

function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function kind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function validId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ID;
}

/**
 * The feature definitions of one config and the validation of pushed values against them. Both
 * store implementations share it, so they accept and refuse exactly the same writes.
 */
export class FeatureCatalog {
  private readonly byName: ReadonlyMap<string, FeatureDefinition>;

  constructor(definitions: readonly FeatureDefinition[]) {
    this.byName = new Map(definitions.map((d) => [d.name, d]));
  }

  /**
   * The longest TTL of an entity type when every one of its features has a TTL (its stored
   * values can all expire), else undefined.
   */
  entityTtl(entity: string): number | undefined {
    let max: number | undefined;
    for (const d of this.byName.values()) {
      if (d.entity !== entity) continue;
      if (d.ttlMs === undefined) return undefined;
      max = Math.max(max ?? 0, d.ttlMs);
    }
    return max;
  }

  list(): readonly FeatureDefinition[] {
    return [...this.byName.values()];
  }

  get(name: string): FeatureDefinition | undefined {
    return this.byName.get(name);
  }

  /** Every problem of the batch (empty when valid). */
  validate(writes: readonly FeatureWrite[]): FeatureIssue[] {
    const issues: FeatureIssue[] = [];
    writes.forEach((w, index) => {
      const add = (path: string, problem: string): void => {
        issues.push({
          index,
          feature: typeof w.feature === 'string' ? w.feature : '',
          path,
          problem,
        });
      };
      if (!validId(w.entityId)) add('entity_id', `must be a string of 1 to ${MAX_ID} characters`);
      if (w.userId !== undefined && !validId(w.userId))
        add('user_id', `must be a string of 1 to ${MAX_ID} characters`);
      if (
        w.jurisdiction !== undefined &&
        !(typeof w.jurisdiction === 'string' && JURISDICTION.test(w.jurisdiction))
      )
        add('jurisdiction', 'must be a jurisdiction name (letters, digits, ".", "_", "-")');
      const def = typeof w.feature === 'string' ? this.byName.get(w.feature) : undefined;
      if (def === undefined) {
        add('feature', `unknown feature ${show(w.feature)}`);
        return;
      }
      if (w.version !== undefined && w.version !== def.version)
        add('version', `is ${show(w.version)} but ${def.name} is at version ${def.version}`);
      const problem = valueProblem(def, w.value);
      if (problem !== undefined) add(problem.path, problem.problem);
    });
    return issues;
  }

  /** Validates and turns the batch into entries; throws `SY_ERR_FEATURE_INVALID` listing every problem. */
  entries(writes: readonly FeatureWrite[], now: number): FeatureEntry[] {
    const issues = this.validate(writes);
    if (issues.length > 0) throw invalid(issues);
    return writes.map((w) => {
      const def = this.byName.get(w.feature)!;
      const userId = w.userId ?? (def.entity === 'user' ? w.entityId : undefined);
      const value = Array.isArray(w.value) ? Object.freeze([...(w.value as number[])]) : w.value;
      return {
        feature: def.name,
        entityId: w.entityId,
        value: value as FeatureValue,
        version: def.version,
        label: def.label,
        ...(def.purpose === undefined ? {} : { purpose: def.purpose }),
        ...(userId === undefined ? {} : { userId }),
        ...(w.jurisdiction === undefined ? {} : { jurisdiction: w.jurisdiction }),
        writtenAt: now,
        ...(def.ttlMs === undefined ? {} : { expiresAt: now + def.ttlMs }),
      };
    });
  }
}

/** The `SY_ERR_FEATURE_INVALID` error of a batch: every problem, `writes[i].path: problem`. */
export function invalid(issues: readonly FeatureIssue[]): Error {
  const shown = issues
    .slice(0, SHOWN_ISSUES)
    .map(
      (i) =>
        `writes[${i.index}].${i.path}${i.feature === '' ? '' : ` (${i.feature})`}: ${i.problem}`,
    );
  const more = issues.length > SHOWN_ISSUES ? `; and ${issues.length - SHOWN_ISSUES} more` : '';
  const first = issues[0];
  return syError('SY_ERR_FEATURE_INVALID', shown.join('; ') + more, {
    ...(first === undefined ? {} : { param: `writes[${first.index}].${first.path}` }),
  });
}

function inRange(def: FeatureDefinition, n: number): string | undefined {
  if (def.min !== undefined && n < def.min) return `${show(n)} is below min ${def.min}`;
  if (def.max !== undefined && n > def.max) return `${show(n)} is above max ${def.max}`;
  return undefined;
}

function valueProblem(
  def: FeatureDefinition,
  value: unknown,
): { path: string; problem: string } | undefined {
  const bad = (problem: string, path = 'value') => ({ path, problem });
  switch (def.type) {
    case 'float':
    case 'int': {
      if (typeof value !== 'number' || !Number.isFinite(value))
        return bad(`must be a finite number, got ${kind(value)} ${show(value)}`);
      if (def.type === 'int' && !Number.isSafeInteger(value))
        return bad(`must be a whole number, got ${show(value)}`);
      const r = inRange(def, value);
      return r === undefined ? undefined : bad(r);
    }
    case 'bool':
      return typeof value === 'boolean'
        ? undefined
        : bad(`must be true or false, got ${kind(value)}`);
    case 'string': {
      if (typeof value !== 'string') return bad(`must be a string, got ${kind(value)}`);
      const max = def.maxLength ?? DEFAULT_MAX_STRING;
      return value.length > max
        ? bad(`is ${value.length} characters, longer than ${max}`)
        : undefined;
    }
    case 'enum': {
      const values = def.values ?? [];
      if (typeof value === 'string' && values.includes(value)) return undefined;
      return bad(
        `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}, got ${show(value)}`,
      );
    }
    case 'vector': {
      if (!Array.isArray(value))
        return bad(`must be an array of ${def.dims} numbers, got ${kind(value)}`);
      if (value.length !== def.dims)
        return bad(`must have ${def.dims} elements, got ${value.length}`);
      for (let i = 0; i < value.length; i++) {
        const n: unknown = value[i];
        if (typeof n !== 'number' || !Number.isFinite(n))
          return bad(`must be a finite number, got ${kind(n)}`, `value[${i}]`);
        const r = inRange(def, n);
        if (r !== undefined) return bad(r, `value[${i}]`);
      }
      return undefined;
    }
  }
}
