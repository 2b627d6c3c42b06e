import { z } from 'zod';
import type {
  RouteHint,
  VectorFilter,
  VectorHit,
  VectorMetadata,
  VectorRecord,
} from '../contracts/vector-index.js';
import { syError } from '../core/errors.js';
import { MAX_K } from './local-index.js';

/**
 * The JSON shapes of the vector HTTP API (collections for apps, shards for other nodes). Field
 * names follow the contract (`entityType`, `userId`), so records cross the wire unchanged.
 */
const text = z.string().min(1).max(256);
const finite = z.number().finite();
const attr = z.union([z.string(), finite, z.boolean()]);
const label = z.enum(['public', 'consented', 'sensitive', 'restricted']);
const tier = z.enum(['hot', 'warm', 'cold']);

const wireMeta = z.strictObject({
  tenant: text.optional(),
  label,
  entityType: text,
  userId: text.optional(),
  jurisdiction: text.optional(),
  geo: text.optional(),
  createdAt: finite.optional(),
  updatedAt: finite.optional(),
  expiresAt: finite.optional(),
  attrs: z.record(z.string().max(64), attr).optional(),
});

export const wireRecord = z.strictObject({
  id: text,
  vector: z.array(finite).min(1).max(65_536),
  meta: wireMeta,
});

export const filterSchema = z.strictObject({
  labels: z.array(label).optional(),
  entityTypes: z.array(text).optional(),
  userIds: z.array(text).optional(),
  excludeUserIds: z.array(text).optional(),
  jurisdictions: z.array(text.nullable()).optional(),
  geos: z.array(text).optional(),
  updatedAfter: finite.optional(),
  updatedBefore: finite.optional(),
  attrs: z.record(z.string().max(64), z.union([attr, z.array(attr)])).optional(),
});

const routeSchema = z.strictObject({
  geo: text.optional(),
  entityTypes: z.array(text).optional(),
  tiers: z.array(tier).optional(),
  jurisdictions: z.array(text.nullable()).optional(),
});

export const upsertBody = z.strictObject({ records: z.array(wireRecord).min(1).max(10_000) });
export const searchBody = z.strictObject({
  vector: z.array(finite).min(1).max(65_536),
  k: z.number().int().min(1).max(MAX_K).default(10),
  tenant: text.optional(),
  filter: filterSchema.optional(),
  route: routeSchema.optional(),
  ef: z
    .number()
    .int()
    .min(1)
    .max(MAX_K * 4)
    .optional(),
});
export const deleteBody = z.strictObject({
  tenant: text.optional(),
  ids: z.array(text).min(1).max(10_000),
});
export const deleteWhereBody = z.strictObject({ tenant: text.optional(), filter: filterSchema });
export const getBody = z.strictObject({ tenant: text.optional(), id: text });
export const emptyBody = z.strictObject({});

/** Parses a body against a schema; problems become one SY_ERR_VECTOR_INVALID listing them. */
export function parseWire<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issues = r.error.issues
    .slice(0, 5)
    .map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`)
    .join('; ');
  throw syError('SY_ERR_VECTOR_INVALID', issues);
}

/** A wire record as a contract record for `tenant`, with times defaulted to `now`. */
export function toRecord(
  r: z.output<typeof wireRecord>,
  tenant: string,
  now: number,
): VectorRecord {
  const m = r.meta;
  const meta: VectorMetadata = {
    tenant,
    label: m.label,
    entityType: m.entityType,
    ...(m.userId === undefined ? {} : { userId: m.userId }),
    ...(m.jurisdiction === undefined ? {} : { jurisdiction: m.jurisdiction }),
    ...(m.geo === undefined ? {} : { geo: m.geo }),
    createdAt: m.createdAt ?? now,
    updatedAt: m.updatedAt ?? now,
    ...(m.expiresAt === undefined ? {} : { expiresAt: m.expiresAt }),
    ...(m.attrs === undefined ? {} : { attrs: m.attrs }),
  };
  return { id: r.id, vector: r.vector, meta };
}

/** Drops `undefined` members (zod output vs exactOptionalPropertyTypes). */
export function toFilter(f: z.output<typeof filterSchema> | undefined): VectorFilter | undefined {
  return f === undefined ? undefined : (JSON.parse(JSON.stringify(f)) as VectorFilter);
}

export function toRoute(r: z.output<typeof routeSchema> | undefined): RouteHint | undefined {
  return r === undefined ? undefined : (JSON.parse(JSON.stringify(r)) as RouteHint);
}

export function hitJson(h: VectorHit): { id: string; distance: number; meta: VectorMetadata } {
  return { id: h.id, distance: h.distance, meta: h.meta };
}
