// @ts-check
import tseslint from 'typescript-eslint';

/**
 * Import boundaries of DESIGN.md's module map, enforced: dependencies point down the table and
 * toward contracts/; nothing imports frontdoor/ or main.ts but the composition root and the CLI.
 * Plain `no-restricted-imports` per layer: no resolver plugin, so no native binaries to install.
 */
const LAYERS = {
  contracts: [],
  core: ['contracts'],
  config: ['core', 'contracts'],
  state: ['core', 'contracts'],
  observability: ['core', 'contracts'],
  privacy: ['core', 'contracts'],
  orchestrator: ['core', 'contracts'],
  backends: ['core', 'contracts'],
  admission: ['core', 'contracts', 'state'],
  release: ['core', 'contracts', 'state'],
  retrieval: ['core', 'contracts', 'state'],
  features: ['core', 'contracts', 'state'],
  // A demo/bench upstream, not part of the gateway: it may use nothing of it.
  simulator: [],
  // Offline model building (demo models, quantization): never imported by the serving path.
  modelkit: ['core', 'contracts', 'backends'],
  // The one path of every model call (#14): resolve, policy, admit, call, settle, record; and
  // what routes and batch lines share of journeys asked as chat models (it runs them).
  pipeline: ['core', 'contracts', 'admission', 'backends', 'orchestrator'],
  // One module per capability: open / reconfigure / close; picks implementations (#14).
  wiring: [
    'core',
    'contracts',
    'config',
    'state',
    'observability',
    'privacy',
    'orchestrator',
    'backends',
    'admission',
    'release',
    'retrieval',
    'features',
    'pipeline',
  ],
  // The primary process of `serve --workers N` (#17) and a worker's link to it.
  cluster: ['core', 'contracts', 'admission'],
  frontdoor: [
    'core',
    'contracts',
    'config',
    'state',
    'observability',
    'privacy',
    'orchestrator',
    'backends',
    'admission',
    'release',
    'retrieval',
    'features',
    'pipeline',
  ],
  cli: ['*'],
};
const ALL = Object.keys(LAYERS);

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      '.bench-build/**',
      'node_modules/**',
      'coverage/**',
      'bench/results/**',
      'dashboard/dist/**',
      'examples/**/models/**',
    ],
  },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  ...Object.entries(LAYERS)
    .filter(([, allowed]) => !allowed.includes('*'))
    .map(([layer, allowed]) => {
      const banned = ALL.filter((l) => l !== layer && !allowed.includes(l));
      return {
        files: [`src/${layer}/**/*.ts`],
        rules: {
          'no-restricted-imports': [
            'error',
            {
              patterns: [
                {
                  regex: `^(\\.\\./)+(${banned.join('|')})(/|$)`,
                  message: `${layer}/ may import only ${[layer, ...allowed].join(', ')} (DESIGN.md module map)`,
                },
                { group: ['**/main.js'], message: 'only src/cli may import the composition root' },
              ],
            },
          ],
        },
      };
    }),
  {
    files: ['**/*.test.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
