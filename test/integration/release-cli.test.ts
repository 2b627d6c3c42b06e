import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '../../src/cli/index.ts');
const dir = mkdtempSync(join(tmpdir(), 'sy-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sy = async (...args: string[]) => {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', CLI, ...args], {
      cwd: join(import.meta.dirname, '../..'),
    });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
};

describe('switchyard models and keys commands', () => {
  it('creates a signing key, then pushes, signs, promotes and lists a version, loading it into the ONNX store', async () => {
    const keys = await sy(
      'keys',
      'signing-create',
      '--id',
      'release-1',
      '--out',
      join(dir, 'keys'),
    );
    expect(keys.code).toBe(0);
    expect(readFileSync(join(dir, 'keys/release-1.pub.pem'), 'utf8')).toMatch(/BEGIN PUBLIC KEY/);
    writeFileSync(
      join(dir, 'switchyard.yaml'),
      stringify({
        state: { sqlite: 'state/registry.db' },
        release: { signing_keys: [{ id: 'release-1', file: 'keys/release-1.pub.pem' }] },
        models: { intent: { backend: 'onnx', store: 'models/intent' } },
      }),
    );
    mkdirSync(join(dir, 'artifact'));
    writeFileSync(join(dir, 'artifact/model.onnx'), 'not really onnx');
    const cfg = ['--config', join(dir, 'switchyard.yaml'), '--model', 'intent', '--version', '3'];
    expect(
      (
        await sy(
          'models',
          'push',
          ...cfg,
          '--artifact',
          join(dir, 'artifact'),
          '--meta',
          'owner=ds',
        )
      ).code,
    ).toBe(0);
    const unsigned = await sy('models', 'promote', ...cfg, '--stage', 'canary', '--reason', 'try');
    expect(unsigned.code).not.toBe(0);
    expect(unsigned.err).toMatch(/SY_ERR_ARTIFACT_UNSIGNED/);
    expect(
      (
        await sy(
          'models',
          'sign',
          ...cfg,
          '--key',
          join(dir, 'keys/release-1.key.pem'),
          '--key-id',
          'release-1',
        )
      ).code,
    ).toBe(0);
    const promoted = await sy(
      'models',
      'promote',
      ...cfg,
      '--stage',
      'canary',
      '--reason',
      'ramp v3',
    );
    expect(promoted.code).toBe(0);
    expect(existsSync(join(dir, 'models/intent/3/model.onnx'))).toBe(true);
    const list = JSON.parse(
      (await sy('models', 'list', '--config', join(dir, 'switchyard.yaml'))).out,
    ) as {
      version: string;
      stage: string;
    }[];
    expect(list.map((v) => [v.version, v.stage])).toEqual([['3', 'canary']]);
    expect((await sy('models', 'retire', ...cfg, '--reason', 'done')).code).toBe(0);
    expect(existsSync(join(dir, 'models/intent/3'))).toBe(false);
  }, 60_000);
});
