import { describe, expect, it } from 'vitest';
import { DOC_FILES, readDoc } from './doc-files.js';
import { configKeyPaths } from '../support/config-keys.js';
import { knownKey, namedKeys, normalizeKey, tableKeys, unknownYamlKeys } from './config-doc.js';

const paths = configKeyPaths();
const reference = readDoc('docs/configuration.md');
const documented = new Set(tableKeys(reference).flatMap(normalizeKey));

describe('the configuration reference (docs/configuration.md)', () => {
  it('names every key path the config schema accepts', () => {
    expect(paths.size).toBeGreaterThan(300);
    // An object key (`server.limits`) is named by the rows of its members.
    const named = (p: string): boolean =>
      documented.has(p) || [...documented].some((d) => d.startsWith(`${p}.`));
    expect([...paths].filter((p) => !named(p))).toEqual([]);
  });

  it('names no key the schema does not accept', () => {
    expect([...documented].filter((k) => !paths.has(k))).toEqual([]);
  });
});

describe('the docs and the README', () => {
  it('name only config keys that exist, in prose', () => {
    const bad = DOC_FILES.flatMap((f) =>
      namedKeys(readDoc(f))
        .flatMap((k) => normalizeKey(k).map((n) => [k, n] as const))
        .filter(([, n]) => !knownKey(n, paths))
        .map(([k]) => `${f}: ${k}`),
    );
    expect(bad).toEqual([]);
  });

  it('show config fragments whose every key exists', () => {
    const bad = DOC_FILES.flatMap((f) =>
      unknownYamlKeys(readDoc(f), paths).map((k) => `${f} ${k}`),
    );
    expect(bad).toEqual([]);
  });

  it('catch a key that does not exist, in prose and in a config fragment', () => {
    // The README once named `batch.max_queue` (#14): the checks above must see such a key.
    expect(knownKey('models.*.batch.max_queue', paths)).toBe(false);
    expect(namedKeys('Set `models.<model>.batch.max_queue`.')).toEqual([
      'models.<model>.batch.max_queue',
    ]);
    const fence = '```';
    expect(
      unknownYamlKeys(
        `${fence}yaml\nmodels:\n  m: { backend: onnx, batch: { max_queue: 9 } }\n${fence}`,
        paths,
      ),
    ).toEqual(['line 1: models.m.batch.max_queue']);
  });
});
