import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { configDigest } from '../../src/config/load.js';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { CONFIG_BUCKET } from '../../src/state/nats-config-channel.js';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../support/gateway.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { NATS_URL, natsOrSkip } from '../support/nats.js';
import { freePort } from '../support/redis-server.js';

// #17 item 4: config changes reach every replica of a group within 5 s over NATS; a bad config
// is refused everywhere (the last good one keeps serving); /readyz shows each replica's digest
// against the group's desired one.
const run = await natsOrSkip('config propagation between replicas');

interface Ready {
  readonly config: string;
  readonly config_sync?: {
    group: string;
    connected: boolean;
    desired?: string;
    in_sync: boolean;
    refused?: { digest: string; reason: string };
  };
}

const readyz = async (url: string): Promise<Ready> =>
  (await (await fetch(`${url}/readyz`)).json()) as Ready;

/** Polls until `ok` holds for the replica's /readyz; returns how long it took. */
async function until(url: string, ok: (r: Ready) => boolean, timeoutMs = 8_000): Promise<number> {
  const t0 = performance.now();
  let last: Ready | undefined;
  while (performance.now() - t0 < timeoutMs) {
    last = await readyz(url);
    if (ok(last)) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`not reached in ${timeoutMs} ms; last /readyz: ${JSON.stringify(last)}`);
}

const openaiModel = (name: string) => ({
  backend: 'openai',
  url: 'http://127.0.0.1:9/v1',
  upstream_model: name,
});

describe.runIf(run)('config propagation over NATS (two gateway processes)', () => {
  const group = `test-${randomUUID().slice(0, 8)}`;
  const key = generateKey('sk');
  // The text both replicas start from: the same file, as a Deployment's ConfigMap gives them.
  const config = (models: Record<string, unknown>): Record<string, unknown> => ({
    ...baseConfig(hashKey(key, TEST_SECRET)),
    log: { level: 'warn' },
    config_sync: { nats: NATS_URL, group },
    models,
  });
  let a: ProcessGateway;
  let b: ProcessGateway;
  let other: TestGateway;
  let nc: NatsConnection;

  beforeAll(async () => {
    [a, b] = await Promise.all([
      startProcessGateway({ config: config({ m0: openaiModel('m0') }) }),
      startProcessGateway({ config: config({ m0: openaiModel('m0') }) }),
    ]);
    // A gateway of another group on the same NATS: it must not follow this group.
    other = await startTestGateway({
      config: { config_sync: { nats: NATS_URL, group: `${group}-other` } },
    });
    nc = await connect({ servers: NATS_URL });
  }, 60_000);
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), other?.close()]);
    await nc?.close();
  });

  const models = async (url: string): Promise<string[]> => {
    const res = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    return ((await res.json()) as { data: { id: string }[] }).data.map((m) => m.id).sort();
  };

  it('starts both replicas on the group config, shown at /readyz', async () => {
    for (const g of [a, b]) {
      await until(
        g.url,
        (r) => r.config_sync?.connected === true && r.config_sync.desired !== undefined,
      );
      const r = await readyz(g.url);
      expect(r.config_sync).toMatchObject({ group, in_sync: true, desired: r.config });
    }
    expect((await readyz(a.url)).config).toBe((await readyz(b.url)).config);
  });

  it('carries a change applied at one replica to the other within 5 s', async () => {
    const before = (await readyz(b.url)).config;
    writeFileSync(
      a.configPath,
      stringify(config({ m0: openaiModel('m0'), m1: openaiModel('m1') })),
    );
    a.signal('SIGHUP');
    const applied = configDigest(
      stringify(config({ m0: openaiModel('m0'), m1: openaiModel('m1') })),
    );
    await until(a.url, (r) => r.config === applied);
    const took = await until(b.url, (r) => r.config === applied);
    expect(took).toBeLessThan(5_000);
    expect(applied).not.toBe(before);
    // B serves the new config, not just its digest.
    expect(await models(b.url)).toEqual(['m0', 'm1']);
    expect((await readyz(b.url)).config_sync).toMatchObject({ desired: applied, in_sync: true });
    // The other group did not move.
    const o = await readyz(other.url);
    expect(o.config).toBe(other.gateway.runtime().snapshot.digest);
    expect(o.config_sync).toMatchObject({ in_sync: true, desired: o.config });
  });

  it('refuses a bad config everywhere and keeps serving the last good one', async () => {
    const good = (await readyz(a.url)).config;
    // At the replica where it is applied: refused, so never published.
    writeFileSync(
      a.configPath,
      stringify(config({ m0: { ...openaiModel('m0'), fallback: ['nowhere'] } })),
    );
    a.signal('SIGHUP');
    await until(a.url, () => /config reload rejected/.test(a.output()));
    // Published by something that skipped validation: every replica refuses it, and shows it.
    const text = stringify(config({ m0: { ...openaiModel('m0'), fallback: ['nowhere'] }, m9: 1 }));
    const bad = configDigest(text);
    const kv = await nc.jetstream().views.kv(CONFIG_BUCKET);
    await kv.put(
      `${group}.desired`,
      Buffer.from(JSON.stringify({ digest: bad, text, origin: 'test', at: Date.now() })),
    );
    for (const g of [a, b]) {
      await until(g.url, (r) => r.config_sync?.refused?.digest === bad, 5_000);
      const r = await readyz(g.url);
      expect(r.config).toBe(good);
      expect(r.config_sync).toMatchObject({ desired: bad, in_sync: false });
      expect(r.config_sync?.refused?.reason).toContain('m9');
      expect(await models(g.url)).toEqual(['m0', 'm1']);
    }
    // A good config published after it brings both back in sync.
    const fixed = stringify(config({ m2: openaiModel('m2') }));
    await kv.put(
      `${group}.desired`,
      Buffer.from(
        JSON.stringify({
          digest: configDigest(fixed),
          text: fixed,
          origin: 'test',
          at: Date.now(),
        }),
      ),
    );
    for (const g of [a, b]) {
      await until(
        g.url,
        (r) => r.config === configDigest(fixed) && r.config_sync?.in_sync === true,
      );
      expect(await models(g.url)).toEqual(['m2']);
    }
  });

  it('brings a restarted replica with an old file onto the group config', async () => {
    const desired = (await readyz(a.url)).config;
    const c = await startProcessGateway({ config: config({ m0: openaiModel('m0') }) });
    try {
      // Its file (the group's first config) was published before: the group's config wins.
      await until(c.url, (r) => r.config === desired && r.config_sync?.in_sync === true, 5_000);
      expect((await readyz(a.url)).config).toBe(desired);
    } finally {
      await c.close();
    }
  });
});

describe('config propagation when NATS is unreachable', () => {
  it('serves its own file, applies local reloads and shows it is not connected', async () => {
    const dead = await freePort();
    const gw = await startTestGateway({
      config: { config_sync: { nats: `nats://127.0.0.1:${dead}`, group: 'nowhere' } },
    });
    try {
      const r = await readyz(gw.url);
      expect(r.config).toBe(gw.gateway.runtime().snapshot.digest);
      expect(r.config_sync).toEqual({ group: 'nowhere', connected: false, in_sync: true });
      gw.writeConfig({
        config_sync: { nats: `nats://127.0.0.1:${dead}`, group: 'nowhere' },
        models: { m1: openaiModel('m1') },
      });
      expect((await gw.gateway.reload('api')).result).toBe('applied');
      expect((await readyz(gw.url)).config).toBe(gw.gateway.runtime().snapshot.digest);
      expect(
        gw.logs.some((l) => String(l['msg']).startsWith('config sync: NATS unreachable')),
      ).toBe(true);
    } finally {
      await gw.close();
    }
  });
});
