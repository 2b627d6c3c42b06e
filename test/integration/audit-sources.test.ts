import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runCli } from '../../src/cli/program.js';
import { fingerprintOfHash, generateKey, hashKey } from '../../src/core/api-key.js';
import { SqliteAuditLog } from '../../src/state/sqlite-audit-log.js';
import { captureIo } from '../support/cli-io.js';
import { startTestGateway, TEST_SECRET, type TestGateway } from '../support/gateway.js';

/** #14: every kind of admin change lands in the one audit trail that GET /admin/audit reads. */
const adminKey = generateKey('sk');
const tenants = (extra: Record<string, unknown> = {}) => ({
  tenants: {
    acme: {
      keys: [{ id: 'ops', hash: hashKey(adminKey, TEST_SECRET), admin: true }],
      models: ['*'],
    },
  },
  ...extra,
});

interface Entry {
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly reason: string;
  readonly before: unknown;
  readonly after: unknown;
  readonly detail: unknown;
}

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

async function entries(query = ''): Promise<Entry[]> {
  const res = await request(`${gw!.url}/admin/audit${query}`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  expect(res.statusCode).toBe(200);
  return ((await res.body.json()) as { entries: Entry[] }).entries;
}

describe('what the audit trail records', () => {
  it('records config reloads, applied and rejected, with the digests before and after', async () => {
    gw = await startTestGateway({ config: tenants() });
    const first = gw.gateway.runtime().snapshot.digest;
    const base = parse(readFileSync(gw.configPath, 'utf8')) as Record<string, unknown>;
    gw.writeConfig({ ...base, log: { level: 'warn' } });
    const applied = await gw.gateway.reload('api');
    expect(applied.result).toBe('applied');
    const second = gw.gateway.runtime().snapshot.digest;
    gw.writeConfig({ ...base, srever: {} });
    expect((await gw.gateway.reload('signal')).result).toBe('rejected');
    expect(await entries('?action=config.reload')).toMatchObject([
      {
        actor: 'config:signal',
        action: 'config.reload.rejected',
        target: gw.configPath,
        reason: expect.stringContaining('srever: unknown key') as string,
        before: { digest: second },
        after: { digest: second },
        detail: { refused_digest: expect.stringMatching(/^[0-9a-f]{16}$/) as string },
      },
      {
        actor: 'config:api',
        action: 'config.reload.applied',
        before: { digest: first },
        after: { digest: second },
      },
    ]);
  });

  it('records a key made by switchyard keys create in the trail the gateway serves', async () => {
    gw = await startTestGateway({ config: tenants() });
    const io = captureIo();
    const code = await runCli(
      ['keys', 'create', '--tenant', 'acme', '--config', gw.configPath, '--id', 'k9'],
      io,
    );
    expect(code, io.stderr()).toBe(0);
    const hash = /hash: "(hmac-sha256:[0-9a-f]{64})"/.exec(io.stdout())![1]!;
    expect(await entries('?action=key.')).toMatchObject([
      {
        actor: expect.stringMatching(/^cli:/) as string,
        action: 'key.create',
        target: 'acme/k9',
        before: null,
        after: { tenant: 'acme', id: 'k9', fingerprint: fingerprintOfHash(hash) },
      },
    ]);
  });

  it('keeps the trail in the file audit.sqlite names when there is no state store', async () => {
    gw = await startTestGateway({ config: tenants({ audit: { sqlite: 'elsewhere/trail.db' } }) });
    const res = await request(`${gw.url}/admin/mode`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ mode: 'surge', reason: 'knob test' }),
    });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(existsSync(join(gw.dir, 'var/audit.db'))).toBe(false);
    const log = SqliteAuditLog.open(join(gw.dir, 'elsewhere/trail.db'));
    expect(await log.listAudit({ action: 'mode.override' })).toMatchObject([
      { reason: 'knob test', after: { mode: 'surge' } },
    ]);
    await log.close();
  });

  it('keeps mode, experiment and registry changes (the CLI ones too) in the state store when there is one', async () => {
    gw = await startTestGateway({
      config: tenants({
        state: { sqlite: 'state/release.db' },
        experiments: [
          {
            id: 'ranker-ab',
            slot: 'ranker',
            kind: 'ab',
            variants: [
              { name: 'control', model: 'ranker', version: '1' },
              { name: 'treatment', model: 'ranker', version: '2' },
            ],
          },
        ],
      }),
    });
    const call = async (method: 'PUT' | 'POST', path: string, body: unknown) => {
      const res = await request(`${gw!.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      await res.body.dump();
      return res.statusCode;
    };
    expect(await call('PUT', '/admin/mode', { mode: 'emergency', reason: 'incident 7' })).toBe(200);
    expect(
      await call('POST', '/admin/experiments/ranker-ab/status', {
        status: 'paused',
        reason: 'bad metrics',
      }),
    ).toBe(200);
    // The CLI writes the same state store while the gateway runs.
    writeFileSync(join(gw.dir, 'model.onnx'), 'not really onnx');
    const io = captureIo();
    const pushed = await runCli(
      [
        'models',
        'push',
        '--config',
        gw.configPath,
        '--model',
        'ranker',
        '--version',
        '3',
        '--artifact',
        join(gw.dir, 'model.onnx'),
        '--reason',
        'new ranker',
      ],
      io,
    );
    expect(pushed, io.stderr()).toBe(0);
    const trail = await entries();
    const actor = `key:${fingerprintOfHash(hashKey(adminKey, TEST_SECRET))}`;
    expect(trail.map((e) => e.action)).toEqual([
      'model.push',
      'experiment.paused',
      'mode.override',
      'experiment.create',
    ]);
    expect(trail[0]).toMatchObject({
      actor: expect.stringMatching(/^cli:/) as string,
      target: 'ranker@3',
      reason: 'new ranker',
      before: null,
      after: { stage: 'staging', digest: expect.stringMatching(/^sha256:/) as string },
    });
    expect(trail[1]).toMatchObject({
      actor,
      target: 'ranker-ab',
      reason: 'bad metrics',
      before: { status: 'running', revision: 1 },
      after: { status: 'paused', revision: 2 },
    });
    expect(trail[3]).toMatchObject({ actor: 'config', before: null, after: { status: 'running' } });
    // One store: no audit file of its own next to the state file.
    expect(existsSync(join(gw.dir, 'var/audit.db'))).toBe(false);
  });
});
