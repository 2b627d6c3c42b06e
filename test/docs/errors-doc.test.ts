import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_REGISTRY } from '../../src/core/errors.js';
import { configKeyPaths, isConfigKey } from '../support/config-keys.js';

const doc = readFileSync(join(import.meta.dirname, '../../docs/errors.md'), 'utf8');
const rowLines = doc.split('\n').filter((l) => l.startsWith('| `SY_ERR_'));
const parsed = rowLines.map((l) => {
  const [code, status, type, retryable, when] = l
    .split('|')
    .slice(1)
    .map((c) => c.trim());
  return {
    code: code!.replaceAll('`', ''),
    spec: { status: Number(status), type, retryable: retryable === 'yes' },
    when: when ?? '',
  };
});
const rows = new Map(parsed.map((r) => [r.code, r.spec]));

describe('the error code docs (docs/errors.md)', () => {
  it('list every code of the registry with its status, type and retryable flag', () => {
    for (const [code, spec] of Object.entries(ERROR_REGISTRY)) {
      expect(rows.get(code), `docs/errors.md lacks ${code}`).toEqual({
        status: spec.status,
        type: spec.type,
        retryable: spec.retryable,
      });
    }
  });

  it('list no code the registry does not have', () => {
    for (const code of rows.keys())
      expect(ERROR_REGISTRY, `docs/errors.md lists unknown ${code}`).toHaveProperty(code);
  });

  it('list each code once', () => {
    const twice = parsed.map((r) => r.code).filter((c, i, all) => all.indexOf(c) !== i);
    expect(twice).toEqual([]);
  });

  it('use codes of the documented shape, never reused with another meaning', () => {
    for (const code of Object.keys(ERROR_REGISTRY)) expect(code).toMatch(/^SY_ERR_[A-Z0-9_]+$/);
    expect(new Set(Object.keys(ERROR_REGISTRY)).size).toBe(rows.size);
  });

  it('name only config keys that exist', () => {
    const paths = configKeyPaths();
    // Dotted names in backticks are config keys, except these JSON paths the docs talk about.
    const notConfig = new Set(['constructor.prototype']);
    const named = parsed
      .flatMap((r) => [...r.when.matchAll(/`([a-z_]+(?:\.[a-z_]+)+)`/g)].map((m) => m[1]!))
      .filter((k) => !notConfig.has(k));
    expect(named.length).toBeGreaterThan(5);
    expect(named.filter((k) => !isConfigKey(k, paths))).toEqual([]);
  });
});
