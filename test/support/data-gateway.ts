import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { TEST_SECRET } from './gateway.js';
import { startProcessGateway, type ProcessGateway } from './gateway-process.js';

/** The data routes' keys of a gateway process: tenant `acme` has an app key and an admin (node) key. */
export interface DataGateway {
  readonly proc: ProcessGateway;
  readonly url: string;
  /** Plain keys of tenant `acme`, by id (`app` always; more with `appKeys`). */
  readonly keys: Readonly<Record<string, string>>;
  /** Admin key of tenant `acme`: what other gateway nodes call the shard API with. */
  readonly nodeKey: string;
  call(
    method: 'GET' | 'POST' | 'PUT',
    path: string,
    key: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<Answer>;
  /** The gateway's resident set size now, in MB (from /proc). */
  rssMb(): number;
  /** One metric sample from /metrics (`undefined` when absent). */
  metric(name: string, labels: Record<string, string>): Promise<number | undefined>;
  close(): Promise<void>;
}

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly json: Record<string, unknown>;
}

export interface DataGatewayOptions {
  /** Extra plain keys of tenant `acme`: id → the key's own settings (`{ quotas }`, or `{}`). */
  readonly appKeys?: Readonly<Record<string, Record<string, unknown>>>;
  /** The admin (node) key's own settings (`{ quotas }`). */
  readonly node?: Record<string, unknown>;
  /** Tenant `acme`'s own settings beside its keys (`quotas`, `classes`, ...). */
  readonly tenant?: Record<string, unknown>;
  /** Config sections (vectors, features, privacy, admission, ...). */
  readonly config?: Record<string, unknown>;
}

/** The built gateway (`dist/`) as a child process, with tenant `acme`'s app and admin keys. */
export async function startDataGateway(opts: DataGatewayOptions = {}): Promise<DataGateway> {
  const nodeKey = generateKey('sk');
  const keys: Record<string, string> = { app: generateKey('sk') };
  const keyConfig: Record<string, unknown>[] = [
    { id: 'node', hash: hashKey(nodeKey, TEST_SECRET), admin: true, ...opts.node },
    { id: 'app', hash: hashKey(keys['app']!, TEST_SECRET) },
  ];
  for (const [id, quotas] of Object.entries(opts.appKeys ?? {})) {
    keys[id] = generateKey('sk');
    keyConfig.push({ id, hash: hashKey(keys[id], TEST_SECRET), ...quotas });
  }
  const proc = await startProcessGateway({
    config: {
      ...opts.config,
      tenants: { acme: { keys: keyConfig, models: ['*'], ...opts.tenant } },
    },
  });
  const dispatcher = new Agent({ connections: 256, pipelining: 1 });
  const call: DataGateway['call'] = async (method, path, key, body, headers = {}) => {
    const res = await request(`${proc.url}${path}`, {
      method,
      dispatcher,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    return {
      status: res.statusCode,
      headers: res.headers,
      json: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown>,
    };
  };
  return {
    proc,
    url: proc.url,
    keys,
    nodeKey,
    call,
    rssMb: () => {
      const status = readFileSync(`/proc/${proc.pid}/status`, 'utf8');
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
      return kb / 1024;
    },
    metric: async (name, labels) => {
      const res = await request(`${proc.url}/metrics`, { dispatcher });
      const text = await res.body.text();
      const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      for (const line of text.split('\n')) {
        if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
        if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ')));
      }
      return undefined;
    },
    close: async () => {
      await dispatcher.close();
      await proc.close();
    },
  };
}

/** The error code of an answer, if it is an error. */
export function codeOf(a: Answer): string | undefined {
  return (a.json['error'] as { code?: string } | undefined)?.code;
}
