import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_REGISTRY } from '../../src/core/errors.js';

const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
// The table under "Error codes" in the README is the error docs page.
const doc = readme.slice(readme.indexOf('## Error codes'));
const rows = new Map(
  doc
    .split('\n')
    .filter((l) => l.startsWith('| `SY_ERR_'))
    .map((l) => {
      const [code, status, type, retryable] = l
        .split('|')
        .slice(1)
        .map((c) => c.trim());
      return [
        code!.replaceAll('`', ''),
        { status: Number(status), type, retryable: retryable === 'yes' },
      ];
    }),
);

describe('the error code docs', () => {
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

  it('use codes of the documented shape, never reused with another meaning', () => {
    for (const code of Object.keys(ERROR_REGISTRY)) expect(code).toMatch(/^SY_ERR_[A-Z0-9_]+$/);
    expect(new Set(Object.keys(ERROR_REGISTRY)).size).toBe(rows.size);
  });
});
