import { defineConfig } from 'vitest/config';

/**
 * Unit, contract, integration and docs tests, run in parallel. The real-process reliability
 * suite (test/reliability/) runs after them, one file at a time (vitest.reliability.config.ts):
 * its overload and fault scenarios measure a gateway process and must not share the cores with
 * other test files.
 */
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['test/reliability/**', '**/node_modules/**'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
});
