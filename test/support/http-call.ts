import { request } from 'undici';
import type { Gateway } from '../../src/main.js';

/** One JSON answer as tests read it. */
export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Record<string, unknown>;
  readonly text: string;
}

/** One JSON call with a key; `headers` are added as they are. */
export async function call(
  base: string,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  key: string | undefined,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await request(`${base}${path}`, {
    method,
    headers: {
      ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.body.text();
  let parsed: Record<string, unknown> = {};
  if (text.startsWith('{')) parsed = JSON.parse(text) as Record<string, unknown>;
  return { status: res.statusCode, headers: res.headers, text, body: parsed };
}

/** The error code of an answer, if it is an error. */
export function errorCode(a: Answer): unknown {
  const e = a.body['error'];
  return e !== null && typeof e === 'object' ? (e as Record<string, unknown>)['code'] : undefined;
}

/** The value of the first metric line matching `line`, or undefined. */
export async function metric(gw: Gateway, line: RegExp): Promise<number | undefined> {
  const text = await gw.metrics.render();
  const hit = text.split('\n').find((l) => line.test(l));
  return hit === undefined ? undefined : Number(hit.split(' ').at(-1));
}
