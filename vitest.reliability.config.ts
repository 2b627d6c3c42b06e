import { defineConfig } from 'vitest/config';

/** The real-process reliability suite (issue #13): one file at a time, after the rest. */
export default defineConfig({
  test: {
    include: ['test/reliability/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
