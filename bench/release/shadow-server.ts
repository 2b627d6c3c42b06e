/**
 * Child process of `bench/release.ts`: a minimal serving path (HTTP in → resolve slot → call the
 * production upstream over an undici Pool → answer → report, mirroring shadow copies to a second
 * upstream) with the real ReleaseManager on SQLite. Slot `plain` has an A/B test only; slot
 * `shadowed` has the same A/B test plus a 100 % shadow release. Prints its port on stdout.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import type { SlotOutput } from '../../src/contracts/slot-resolver.js';
import { systemClock } from '../../src/core/clock.js';
import { systemRandom } from '../../src/core/random.js';
import { ReleaseManager } from '../../src/release/release-manager.js';
import { SqliteRegistryStore } from '../../src/state/sqlite-registry-store.js';

const prodUrl = process.env['PROD_URL']!;
const shadowUrl = process.env['SHADOW_URL']!;
const prod = new Pool(prodUrl, { connections: 64 });
const shadow = new Pool(shadowUrl, { connections: 64 });
const store = new SqliteRegistryStore(
  join(mkdtempSync(join(tmpdir(), 'sy-bench-rel-')), 'state.db'),
);
const manager = new ReleaseManager({
  store,
  clock: systemClock,
  random: systemRandom,
  evaluateMs: 1_000,
  flushMs: 500,
  pollMs: 0,
  shadow: { maxInFlight: 64, timeoutMs: 2_000, maxLagMs: 5 },
  feedbackTtlMs: 60_000,
  feedbackCapacity: 100_000,
});
await manager.start();
const by = { actor: 'bench', reason: 'bench' };
const variants = [
  { name: 'control', model: 'm', version: '1', weight: 1 },
  { name: 'treatment', model: 'm', version: '2', weight: 1 },
];
for (const slot of ['plain', 'shadowed'])
  await manager.create(
    { id: `ab-${slot}`, slot, kind: 'ab', layer: slot, traffic: 100, holdout: 0, variants },
    by,
  );
await manager.create(
  {
    id: 'shadow-1',
    slot: 'shadowed',
    kind: 'shadow',
    layer: 'shadowed',
    traffic: 100,
    holdout: 0,
    variants: [variants[0]!],
    shadow: { percent: 100, targets: [{ model: 'm', version: '3' }] },
  },
  by,
);

const invoke = async (_t: unknown, signal: AbortSignal): Promise<SlotOutput> => {
  const r = await shadow.request({ method: 'POST', path: '/infer', body: '{}', signal });
  return (await r.body.json()) as SlotOutput;
};

let n = 0;
let shadowRequests = 0;
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.url === '/stats') {
      const body = JSON.stringify({
        shadow_shed: manager.shadow.shedCount,
        shadow_requests: shadowRequests,
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
      return;
    }
    const slot = req.url === '/shadowed' ? 'shadowed' : 'plain';
    if (slot === 'shadowed') shadowRequests++;
    const id = `r${n++}`;
    const a = manager.resolve(slot, {
      tenant: 'acme',
      userId: `u${n % 10_000}`,
      requestId: id,
      trafficClass: 'interactive',
    })!;
    const t0 = systemClock.now();
    void prod
      .request({ method: 'POST', path: '/infer', body: '{}' })
      .then((r) => r.body.text())
      .then((text) => {
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
        });
        res.end(text);
        manager.report(
          {
            inferenceId: id,
            slot,
            assignment: a,
            ms: systemClock.now() - t0,
            outcome: 'ok',
            output: JSON.parse(text) as SlotOutput,
          },
          invoke,
        );
      });
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
