import { request } from 'undici';

/** The JSON answers of the feature and consent routes, as the tests read them. */
export interface FeatureJson {
  value: unknown;
  version: number;
  label: string;
  written_at: number;
  expires_at?: number;
}

export interface Answer {
  error: { code: string; message: string; type: string; param: string | null };
  written: number;
  entity_id: string;
  features: Record<string, FeatureJson>;
  withheld: { feature: string; code: string; reason: string }[];
  data: Record<string, unknown>[];
  user: string;
  purposes: Record<string, boolean>;
  version: number;
  revoked: string[];
  granted: string[];
  purged: Record<string, number>;
  purge_failed: Record<string, string>;
}

/** One JSON call with a tenant key; a string body is sent as is. */
export async function call(
  base: string,
  key: string | undefined,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Answer }> {
  const res = await request(`${base}${path}`, {
    method,
    headers: {
      ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return { status: res.statusCode, body: (await res.body.json()) as Answer };
}
