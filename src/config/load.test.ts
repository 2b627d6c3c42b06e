import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULTS } from './defaults.js';
import { ConfigError, parseConfig } from './load.js';

const dir = mkdtempSync(join(tmpdir(), 'sy-config-'));
writeFileSync(join(dir, 'secret.txt'), 's3cret\n');

function problems(text: string): readonly string[] {
  try {
    parseConfig(text, 'test.yaml', dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const MODEL = 'models:\n  chat: { backend: openai, url: "http://127.0.0.1:1/v1" }\n';

describe('config loading', () => {
  it('fills every default from the one defaults table', () => {
    const { config } = parseConfig(MODEL, 'test.yaml', dir);
    expect(config.server.port).toBe(DEFAULTS.server.port);
    expect(config.server.limits.body_bytes).toBe(DEFAULTS.server.limits.body_bytes);
    const chat = config.models['chat']!;
    if (chat.backend === 'onnx') throw new Error('expected an HTTP model');
    expect(chat.retry.budget_ratio).toBe(DEFAULTS.model.retry.budget_ratio);
    expect(chat.breaker.cooldown_ms).toBe(DEFAULTS.model.breaker.cooldown_ms);
    expect(chat.tier).toBe('central');
    expect(chat.backend === 'openai' && chat.operations).toEqual(['chat']);
  });

  it('rejects unknown keys with the path of each offending key', () => {
    const found = problems(
      [
        'models:',
        '  chat2: { backend: openai, url: "http://x/v1", bogus: 1 }',
        'server:',
        '  limits: { body_byte: 5 }',
        'typo_section: {}',
      ].join('\n'),
    );
    expect(found).toContain('models.chat2.bogus: unknown key');
    expect(found).toContain('server.limits.body_byte: unknown key');
    expect(found).toContain('typo_section: unknown key');
  });

  it('names the path of a wrong type or value', () => {
    expect(problems('server: { port: "eighty" }')[0]).toMatch(/^server\.port: /);
    expect(problems('models:\n  m: { backend: openai, url: "ftp://x" }')[0]).toMatch(
      /^models\.m\.url: /,
    );
    expect(problems('models:\n  m: { backend: carrier-pigeon, url: "http://x" }')[0]).toMatch(
      /^models\.m\.backend/,
    );
    expect(problems('server: { deadline: { default_ms: 10, max_ms: 5 } }')[0]).toMatch(
      /^server\.deadline: .*min_ms <= default_ms <= max_ms/,
    );
  });

  it('rejects references to models and tenants that do not exist', () => {
    const found = problems(
      `${MODEL.replace('}', ', fallback: [ghost] }')}tenants:\n  t: { models: [nope] }\nauth: { anonymous_tenant: who }\n`,
    );
    expect(found).toContain('models.chat.fallback[0]: unknown model "ghost"');
    expect(found).toContain('tenants.t.models[0]: unknown model "nope"');
    expect(found).toContain('auth.anonymous_tenant: unknown tenant "who"');
  });

  it('requires a key secret when tenants have keys, and reads it from a file or env', () => {
    const tenants = `tenants:\n  t: { keys: [ { id: k, hash: "hmac-sha256:${'a'.repeat(64)}" } ] }\n`;
    expect(problems(tenants)).toContain(
      'auth.secret: tenants have keys, so auth.secret (env or file) is required',
    );
    const snap = parseConfig(`${tenants}auth: { secret: { file: secret.txt } }`, 'test.yaml', dir);
    expect(snap.secrets.keySecret?.toString()).toBe('s3cret');
    expect(problems(`${tenants}auth: { secret: { env: SY_TEST_UNSET_VAR } }`)[0]).toBe(
      'auth.secret: environment variable SY_TEST_UNSET_VAR is not set',
    );
  });

  it('refuses inline secrets: a secret is an env or file reference only', () => {
    expect(problems('auth: { secret: "plain-text" }')[0]).toMatch(/^auth\.secret: /);
  });

  it('deep-freezes the result', () => {
    const { config } = parseConfig(MODEL, 'test.yaml', dir);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.models['chat']!.fallback)).toBe(true);
    expect(Object.isFrozen(config.server.limits)).toBe(true);
    expect(() => {
      (config.server as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('reports YAML syntax errors and duplicate keys instead of guessing', () => {
    expect(problems('server: { port: 1\n')[0]).toMatch(/line/i);
    expect(problems('server: {}\nserver: {}\n')[0]).toMatch(/unique/i);
  });

  it('names the path of a duplicate key', () => {
    expect(problems(`${MODEL}  chat: { backend: kserve, url: "http://x" }\n`)).toEqual([
      'models.chat: Map keys must be unique at line 3, column 3',
    ]);
  });

  it('names the field of the one alternative a value was meant to be, and keeps the union when none is close', () => {
    expect(problems('state: { sqlite: 42 }')).toEqual([
      'state.sqlite: Invalid input: expected string, received number',
    ]);
    expect(problems('features: { store: { kind: redis } }')).toEqual([
      'features.store.url: Invalid input: expected string, received undefined',
    ]);
    expect(problems('auth: { secret: { env: A, file: b } }')).toEqual([
      'auth.secret: Invalid input',
    ]);
  });

  it('refuses a feature cache on an embedded store, and names the bad key of a Redis store’s cache', () => {
    expect(problems('features: { store: { kind: embedded, cache: { ttl_ms: 5 } } }')).toEqual([
      'features.store.cache: unknown key',
    ]);
    expect(
      problems(
        'features: { store: { kind: redis, url: "redis://x", cache: { labels: [secret] } } }',
      ),
    ).toEqual([
      'features.store.cache.labels[0]: Invalid option: expected one of "public"|"consented"|"sensitive"|"restricted"',
    ]);
  });

  it('resolves the keys of vector shards held by other nodes, naming the shard', () => {
    const shard = (key: string) =>
      `vectors:\n  collections:\n    docs: { dims: 4, shards: [{ id: far, node: n2, url: "http://127.0.0.1:1", api_key: ${key} }] }\n`;
    expect(parseConfig(shard('{ file: secret.txt }'), 'test.yaml', dir).secrets.shardKeys).toEqual(
      new Map([['docs/far', 's3cret']]),
    );
    expect(problems(shard('{ env: SY_TEST_UNSET_VAR }'))).toEqual([
      'vectors.collections.docs.shards[0].api_key: environment variable SY_TEST_UNSET_VAR is not set',
    ]);
  });

  it('does not let a __proto__ key in YAML reach the prototype', () => {
    const found = problems('__proto__: { polluted: true }\n');
    expect(found).toContain('__proto__: unknown key');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('gives the same digest for the same text and a new one for a change', () => {
    const a = parseConfig(MODEL, 'a', dir).digest;
    expect(parseConfig(MODEL, 'b', dir).digest).toBe(a);
    expect(parseConfig(`${MODEL}log: { level: warn }\n`, 'a', dir).digest).not.toBe(a);
  });
});
