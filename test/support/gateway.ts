import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { startGateway, type Gateway, type GatewayOptions } from '../../src/main.js';
import { createLogger } from '../../src/observability/logger.js';

export const TEST_SECRET = 'test-secret-for-switchyard-tests';

/** A gateway on port 0 with a temp config, a tenant `acme` with a valid key, and captured logs. */
export interface TestGateway {
  readonly gateway: Gateway;
  readonly url: string;
  /** A valid key of tenant `acme`. */
  readonly key: string;
  /** Every log line written so far, parsed. */
  readonly logs: Record<string, unknown>[];
  /** Raw log text (to prove what never appears in it). */
  logText(): string;
  readonly configPath: string;
  readonly dir: string;
  /** Rewrites the config file with new contents (merged over the base). */
  writeConfig(config: Record<string, unknown>): void;
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  /** Config merged over the base config (tenants, auth, server, log). */
  readonly config?: Record<string, unknown>;
  readonly options?: Partial<GatewayOptions>;
}

export function baseConfig(keyHash: string): Record<string, unknown> {
  return {
    server: { host: '127.0.0.1', port: 0 },
    auth: { secret: { file: 'secret.txt' } },
    tenants: { acme: { keys: [{ id: 'k1', hash: keyHash }], models: ['*'] } },
    models: {},
  };
}

export async function startTestGateway(opts: TestGatewayOptions = {}): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-test-'));
  writeFileSync(join(dir, 'secret.txt'), TEST_SECRET);
  const key = generateKey('sk');
  const base = baseConfig(hashKey(key, TEST_SECRET));
  const configPath = join(dir, 'switchyard.yaml');
  const write = (config: Record<string, unknown>): void => {
    writeFileSync(configPath, stringify({ ...base, ...config }));
  };
  write(opts.config ?? {});
  let text = '';
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const s = chunk.toString('utf8');
      text += s;
      for (const line of s.split('\n'))
        if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  // The production logger (its redaction included), writing into the test's sink.
  const logger = createLogger('debug', sink);
  const gateway = await startGateway({ configPath, watch: false, logger, ...opts.options });
  return {
    gateway,
    url: gateway.url,
    key,
    logs,
    logText: () => text,
    configPath,
    dir,
    writeConfig: write,
    close: async () => {
      await gateway.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An openai-backend model entry pointing at `url` (a base ending in /v1 is added). */
export function openaiModel(
  url: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { backend: 'openai', url: `${url}/v1`, ...extra };
}
