import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { parse, stringify } from 'yaml';
import { startSimulator, type Simulator } from '../../src/simulator/upstream-simulator.js';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';

const CLI = join(import.meta.dirname, '../../dist/cli/index.js');

async function models(url: string, key: string): Promise<string[]> {
  const res = await request(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
  const body = (await res.body.json()) as { data: { id: string }[] };
  return body.data.map((m) => m.id).sort();
}

describe('config hot reload', () => {
  let sim: Simulator;
  let gw: TestGateway;
  let base: Record<string, unknown>;

  beforeAll(async () => {
    sim = await startSimulator();
    gw = await startTestGateway({
      config: { models: { one: openaiModel(sim.url) } },
      options: { watch: true },
    });
    base = parse(readFileSync(gw.configPath, 'utf8')) as Record<string, unknown>;
  });
  afterAll(async () => {
    await gw.close();
    await sim.close();
  });

  it('applies a changed file without a restart', async () => {
    gw.writeConfig({ ...base, models: { one: openaiModel(sim.url), two: openaiModel(sim.url) } });
    await expect.poll(() => models(gw.url, gw.key), { timeout: 3_000 }).toEqual(['one', 'two']);
    expect(await gw.gateway.metrics.render()).toMatch(
      /switchyard_config_reloads_total\{result="applied"\} [1-9]/,
    );
  });

  it('keeps the last good config when the new file is invalid, and logs why with the path', async () => {
    const before = gw.gateway.runtime();
    gw.writeConfig({ ...base, models: { one: { ...openaiModel(sim.url), retyr: {} } } });
    await expect
      .poll(() => gw.logs.find((l) => l['msg']?.toString().includes('config reload rejected')), {
        timeout: 3_000,
      })
      .toBeDefined();
    const rejected = gw.logs.find((l) => l['msg']?.toString().includes('config reload rejected'))!;
    expect(String(rejected['reason'])).toContain('models.one.retyr: unknown key');
    expect(gw.gateway.runtime()).toBe(before);
    expect(await models(gw.url, gw.key)).toEqual(['one', 'two']);
    expect(await gw.gateway.metrics.render()).toMatch(
      /switchyard_config_reloads_total\{result="rejected"\} [1-9]/,
    );
  });

  it('keeps serving requests that started before a swap on the config they started with', async () => {
    const slow = await startSimulator({ latencyMs: 300 });
    gw.writeConfig({ ...base, models: { one: openaiModel(slow.url) } });
    await expect.poll(() => models(gw.url, gw.key), { timeout: 3_000 }).toEqual(['one']);
    const inflight = request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'one', messages: [{ role: 'user', content: 'x' }] }),
    });
    await new Promise((r) => setTimeout(r, 50));
    gw.writeConfig({ ...base, models: { other: openaiModel(sim.url) } });
    await expect.poll(() => models(gw.url, gw.key), { timeout: 3_000 }).toEqual(['other']);
    const res = await inflight;
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    await slow.close();
  });
});

describe('the switchyard CLI', () => {
  let dir: string;
  let child: ChildProcess | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sy-cli-'));
    writeFileSync(join(dir, 'secret.txt'), 'cli-secret');
  });
  afterAll(() => {
    child?.kill('SIGKILL');
  });

  function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [CLI, ...args], { cwd: dir });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  it('config check accepts a valid file and names every problem of an invalid one', async () => {
    writeFileSync(
      join(dir, 'ok.yaml'),
      stringify({ models: { m: { backend: 'openai', url: 'http://127.0.0.1:1/v1' } } }),
    );
    const ok = await run(['config', 'check', 'ok.yaml']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('valid (1 models, 0 tenants');
    writeFileSync(
      join(dir, 'bad.yaml'),
      'models:\n  m: { backend: openai, url: "http://x/v1", colour: red }\nsrever: {}\n',
    );
    const bad = await run(['config', 'check', 'bad.yaml']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('models.m.colour: unknown key');
    expect(bad.stderr).toContain('srever: unknown key');
  });

  it('keys create prints a key and a config entry that authenticates it', async () => {
    writeFileSync(join(dir, 'auth.yaml'), stringify({ auth: { secret: { file: 'secret.txt' } } }));
    const out = await run([
      'keys',
      'create',
      '--tenant',
      'acme',
      '--config',
      'auth.yaml',
      '--id',
      'k9',
    ]);
    expect(out.code).toBe(0);
    const key = /\n {2}(sy_sk_\S+)\n/.exec(out.stdout)![1]!;
    const entry = /- \{ id: k9, hash: "(hmac-sha256:[0-9a-f]{64})" \}/.exec(out.stdout)![1]!;
    const sim = await startSimulator();
    writeFileSync(
      join(dir, 'served.yaml'),
      stringify({
        server: { port: 0 },
        auth: { secret: { file: 'secret.txt' } },
        tenants: { acme: { keys: [{ id: 'k9', hash: entry }] } },
        models: { m: { backend: 'openai', url: `${sim.url}/v1` } },
      }),
    );
    child = spawn(process.execPath, [CLI, 'serve', '--config', 'served.yaml', '--no-watch'], {
      cwd: dir,
    });
    const url = await new Promise<string>((resolve) => {
      child!.stderr!.on('data', (d: Buffer) => {
        const m = /listening on (http:\/\/\S+)/.exec(d.toString());
        if (m) resolve(m[1]!);
      });
    });
    expect(await models(url, key)).toEqual(['m']);

    // SIGHUP reloads (the file watcher is off, so only the signal can have done it).
    writeFileSync(
      join(dir, 'served.yaml'),
      stringify({
        server: { port: 0 },
        auth: { secret: { file: 'secret.txt' } },
        tenants: { acme: { keys: [{ id: 'k9', hash: entry }] } },
        models: {
          m: { backend: 'openai', url: `${sim.url}/v1` },
          n: { backend: 'openai', url: `${sim.url}/v1` },
        },
      }),
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(await models(url, key)).toEqual(['m']);
    child.kill('SIGHUP');
    await expect.poll(() => models(url, key), { timeout: 3_000 }).toEqual(['m', 'n']);

    const exited = new Promise((resolve) => child!.on('exit', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    child = undefined;
    await sim.close();
  });

  it('refuses unknown commands in one line that points at --help', async () => {
    const out = await run(['frobnicate']);
    expect(out.code).toBe(2);
    expect(out.stderr).toBe("switchyard: unknown command 'frobnicate' (see 'switchyard --help')\n");
  });
});
