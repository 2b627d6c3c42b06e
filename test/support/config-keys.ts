import { z } from 'zod';
import { configSchema } from '../../src/config/schema.js';

type Json = { readonly [k: string]: unknown };

/**
 * Every key path the config schema accepts, such as `server.limits.body_bytes` or
 * `models.*.batch.queue` (`*` stands for a name the user picks: a model, tenant, journey).
 * Derived from the schema itself, so docs can be checked against what the config really takes.
 */
export function configKeyPaths(): ReadonlySet<string> {
  const schema = z.toJSONSchema(configSchema, { unrepresentable: 'any', io: 'input' }) as Json;
  const defs = (schema['$defs'] ?? schema['definitions'] ?? {}) as Record<string, Json>;
  const out = new Set<string>();
  const seen = new Set<Json>();
  const walk = (node: unknown, path: string): void => {
    if (node === null || typeof node !== 'object') return;
    const n = node as Json;
    const ref = n['$ref'];
    if (typeof ref === 'string') {
      const target = defs[ref.replace(/^#\/(\$defs|definitions)\//, '')];
      if (target !== undefined && !seen.has(target)) {
        seen.add(target);
        walk(target, path);
        seen.delete(target);
      }
      return;
    }
    const props = n['properties'];
    if (props !== null && typeof props === 'object') {
      for (const [k, v] of Object.entries(props as Json)) {
        const p = path === '' ? k : `${path}.${k}`;
        out.add(p);
        walk(v, p);
      }
    }
    const extra = n['additionalProperties'];
    if (extra !== null && typeof extra === 'object') walk(extra, path === '' ? '*' : `${path}.*`);
    for (const k of ['anyOf', 'oneOf', 'allOf'])
      for (const alt of (n[k] as unknown[] | undefined) ?? []) walk(alt, path);
    if (n['items'] !== undefined) walk(n['items'], path);
  };
  walk(schema, '');
  return out;
}

/** True when `key` (`batch.queue`, `server.limits.body_bytes`) ends some accepted key path. */
export function isConfigKey(key: string, paths: ReadonlySet<string> = configKeyPaths()): boolean {
  const want = key.split('.');
  for (const p of paths) {
    const have = p.split('.');
    if (have.length < want.length) continue;
    const tail = have.slice(have.length - want.length);
    if (tail.every((seg, i) => seg === '*' || seg === want[i])) return true;
  }
  return false;
}
