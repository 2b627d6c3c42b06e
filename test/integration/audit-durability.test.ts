import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchFlags } from '../../bench/lib/launch.js';
import { fingerprintOfHash, generateKey, hashKey } from '../../src/core/api-key.js';
import { TEST_SECRET } from '../support/gateway.js';
import {
  startProcess,
  startProcessGateway,
  type ProcessGateway,
  type TestProcess,
} from '../support/gateway-process.js';

/**
 * #14: admin changes are on record before they are acknowledged, and the record outlives the
 * process. The gateway runs as users run it (the built bin, no `state:`: its own audit file),
 * is killed with SIGKILL, and started again on the same directory.
 */
const ROOT = join(import.meta.dirname, '../..');
const BIN = join(ROOT, 'dist/cli/index.js');
const appKey = generateKey('sk');
const adminKey = generateKey('sk');
const adminActor = `key:${fingerprintOfHash(hashKey(adminKey, TEST_SECRET))}`;
const appActor = `key:${fingerprintOfHash(hashKey(appKey, TEST_SECRET))}`;

interface Entry {
  readonly id: number;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly reason: string;
  readonly before: unknown;
  readonly after: unknown;
  readonly detail: unknown;
}
interface Page {
  readonly entries: Entry[];
  readonly next_cursor: string | null;
  readonly error?: { readonly code: string; readonly param?: string };
}

let first: ProcessGateway;
let second: TestProcess | undefined;
/** When the changes were made, for the time filters. */
let before: number;
let after: number;

async function call(url: string, method: string, path: string, key: string, body?: unknown) {
  const res = await request(`${url}${path}`, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.statusCode, body: (await res.body.json()) as Page };
}

const audit = async (query: string, key = adminKey) =>
  call(second!.url, 'GET', `/admin/audit${query}`, key);

const cli = async (...args: string[]) => {
  try {
    const r = await promisify(execFile)(process.execPath, [BIN, ...args], { timeout: 30_000 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
};

beforeAll(async () => {
  first = await startProcessGateway({
    config: {
      tenants: {
        acme: {
          keys: [
            { id: 'app', hash: hashKey(appKey, TEST_SECRET) },
            { id: 'ops', hash: hashKey(adminKey, TEST_SECRET), admin: true },
          ],
          models: ['*'],
        },
      },
    },
  });
  before = Date.now();
  const mode = (m: string, reason: string) =>
    call(first.url, 'PUT', '/admin/mode', adminKey, { mode: m, reason, ttl_s: 600 });
  expect((await mode('surge', 'load drill')).status).toBe(200);
  const grant = await call(first.url, 'PUT', '/v1/consent/u-42', appKey, {
    purposes: { location: true },
  });
  expect(grant.status).toBe(200);
  const revoke = await call(first.url, 'POST', '/v1/consent/u-42/revoke', appKey, {
    purposes: ['location'],
  });
  expect(revoke.status).toBe(200);
  expect((await mode('emergency', 'drill, step 2')).status).toBe(200);
  expect((await mode('normal', 'drill over')).status).toBe(200);
  after = Date.now();
  // No grace: the process dies the moment the last answer is in.
  first.signal('SIGKILL');
  expect(await first.exited()).toBe('SIGKILL');
  second = await startProcess({
    nodeArgs: [...launchFlags(ROOT), BIN, 'serve', '--config', first.configPath, '--no-watch'],
    ready: /listening on (http:\/\/\S+)/,
  });
}, 60_000);

afterAll(async () => {
  await second?.stop();
  await first?.close();
});

describe('the audit trail across kill -9 and a restart', () => {
  it('serves the mode overrides and the consent revocation made before the kill, newest first', async () => {
    const r = await audit('?action=mode.override');
    expect(r.status).toBe(200);
    expect(r.body.entries.map((e) => (e.after as { mode: string }).mode)).toEqual([
      'normal',
      'emergency',
      'surge',
    ]);
    const surge = r.body.entries[2]!;
    expect(surge).toMatchObject({
      actor: adminActor,
      action: 'mode.override',
      target: 'admission.mode',
      reason: 'load drill',
      before: { mode: 'normal', forced: false },
      after: { mode: 'surge', forced: true },
    });
    expect(Date.parse(surge.at)).toBeGreaterThanOrEqual(before - 1);

    const consent = await audit('?action=consent.revoke');
    expect(consent.body.entries).toMatchObject([
      {
        actor: appActor,
        action: 'consent.revoke',
        target: 'acme/u-42',
        before: { purposes: { location: true } },
        after: { purposes: { location: false } },
      },
    ]);
  });

  it('serves the same entries through switchyard audit list, as JSON and as a table', async () => {
    const api = await audit('?limit=50');
    const json = await cli('audit', 'list', '--config', first.configPath, '--json');
    expect(json.code, json.err).toBe(0);
    expect((JSON.parse(json.out) as Page).entries).toEqual(api.body.entries);

    const table = await cli(
      'audit',
      'list',
      '--config',
      first.configPath,
      '--action',
      'consent.revoke',
    );
    expect(table.code, table.err).toBe(0);
    const lines = table.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^time \(UTC\)\s+actor\s+action\s+target\s+reason\s+change$/);
    expect(lines.slice(1)).toHaveLength(1);
    expect(lines[1]).toMatch(/consent\.revoke\s+acme\/u-42\s+revoked location/);
  });

  it('filters by actor, target and time', async () => {
    const byAdmin = await audit(`?actor=${encodeURIComponent(adminActor)}`);
    expect(byAdmin.body.entries.length).toBe(3);
    expect(new Set(byAdmin.body.entries.map((e) => e.actor))).toEqual(new Set([adminActor]));
    const byTarget = await audit('?target=acme%2Fu-42');
    expect(byTarget.body.entries.map((e) => e.action)).toEqual([
      'consent.revoke',
      'consent.update',
    ]);
    const inWindow = await audit(
      `?since=${new Date(before - 1).toISOString()}&until=${after + 1}&action=mode.override`,
    );
    expect(inWindow.body.entries.length).toBe(3);
    const later = await audit(`?since=${after + 60_000}`);
    expect(later.body).toEqual({ entries: [], next_cursor: null });
    const cliActor = await cli(
      'audit',
      'list',
      '--config',
      first.configPath,
      '--actor',
      appActor,
      '--json',
    );
    expect((JSON.parse(cliActor.out) as Page).entries.map((e) => e.action)).toEqual([
      'consent.revoke',
      'consent.update',
    ]);
  });

  it('pages newest first with next_cursor until the last page, with no gaps or repeats', async () => {
    const all = (await audit('?limit=1000')).body.entries.map((e) => e.id);
    expect(all.length).toBeGreaterThanOrEqual(4);
    const seen: number[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 50; page++) {
      const r = await audit(`?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`);
      expect(r.body.entries.length).toBeLessThanOrEqual(2);
      seen.push(...r.body.entries.map((e) => e.id));
      cursor = r.body.next_cursor;
      if (cursor === null) break;
    }
    expect(seen).toEqual(all);
    const viaCli = await cli(
      'audit',
      'list',
      '--config',
      first.configPath,
      '--limit',
      '2',
      '--cursor',
      String(all[1]),
      '--json',
    );
    expect((JSON.parse(viaCli.out) as Page).entries.map((e) => e.id)).toEqual(all.slice(2, 4));
  });

  it('answers bad parameters with 400 naming the parameter, and non-admin keys with 403', async () => {
    for (const [query, param] of [
      ['?since=yesterday', 'since'],
      ['?until=1&since=2', 'until'],
      ['?limit=0', 'limit'],
      ['?limit=abc', 'limit'],
      ['?cursor=-3', 'cursor'],
      ['?colour=red', 'colour'],
      ['?action=a&action=b', 'action'],
    ] as const) {
      const r = await audit(query);
      expect(r.status, query).toBe(400);
      expect(r.body.error).toMatchObject({ code: 'SY_ERR_INVALID_REQUEST', param });
    }
    const r = await audit('', appKey);
    expect(r.status).toBe(403);
    expect(r.body.error?.code).toBe('SY_ERR_ADMIN_REQUIRED');
  });
});
