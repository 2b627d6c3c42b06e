import { MB, rssBytes } from '../lib/proc-stats.js';
import { adminKeys, gatesIdle } from '../../test/support/gate-state.js';
import { startProcessGateway } from '../../test/support/gateway-process.js';
import { chatAndEmbeddings, startUpstream } from '../../test/support/upstream.js';
import {
  corpusGatewayConfig,
  corpusKinds,
  malformedCorpus,
  runCase,
  type CaseResult,
} from '../../test/reliability/corpus/malformed.js';
import type { FaultScenario } from './scenario.js';

/**
 * Issue #13: 10,000 malformed requests of the corpus's kinds (test/reliability/corpus), 64 at a
 * time over raw sockets, against the gateway as a child process. Judged: the process never
 * exits, every case is answered as the contract says (a JSON 4xx with a registry code, never a
 * 5xx), and its RSS grows by less than 30 MB from a warmed-up start.
 */
const SEED = 13_013;
const AT_ONCE = 64;

export const scenario: FaultScenario = {
  id: 'malformed',
  title: 'Malformed requests: no crash, a JSON 4xx for each, bounded memory',
  async run(ctx) {
    const total = ctx.quick ? 1_000 : 10_000;
    const up = await startUpstream(chatAndEmbeddings);
    const keys = adminKeys();
    const gw = await startProcessGateway({ config: corpusGatewayConfig(up.url, keys.tenants) });
    const port = Number(new URL(gw.url).port);
    try {
      const kinds = corpusKinds(keys.user).length;
      const runAll = async (seed: number, perKind: number): Promise<CaseResult[]> => {
        const cases = malformedCorpus(keys.user, seed, perKind);
        const results: CaseResult[] = new Array<CaseResult>(cases.length);
        let next = 0;
        const worker = async (): Promise<void> => {
          for (let i = next++; i < cases.length && gw.child.exitCode === null; i = next++)
            results[i] = await runCase(port, cases[i]!);
        };
        await Promise.all(Array.from({ length: AT_ONCE }, worker));
        return results.filter((r) => r !== undefined);
      };
      // Warm up (JIT, pools, buffers) before the baseline.
      await runAll(SEED - 1, 2);
      const before = rssBytes(gw.pid);
      let peak = before;
      const sampler = setInterval(() => {
        if (gw.child.exitCode === null) peak = Math.max(peak, rssBytes(gw.pid));
      }, 250);
      const t0 = performance.now();
      const results = await runAll(SEED, Math.ceil(total / kinds));
      const seconds = (performance.now() - t0) / 1000;
      clearInterval(sampler);
      const alive = gw.child.exitCode === null;
      const after = alive ? rssBytes(gw.pid) : 0;
      const bad = results.filter((r) => r.problems.length > 0);
      const byKind = new Map<string, number>();
      for (const r of bad) byKind.set(r.kind, (byKind.get(r.kind) ?? 0) + 1);
      const fiveXx = results.filter((r) => r.statuses.some((s) => s >= 500)).length;
      ctx.log(
        `${results.length} cases of ${kinds} kinds in ${seconds.toFixed(1)} s; ` +
          `RSS ${(before / MB).toFixed(1)} -> ${(after / MB).toFixed(1)} MB (peak ${(peak / MB).toFixed(1)})`,
      );
      if (bad.length > 0)
        ctx.log(`broke the contract: ${JSON.stringify(Object.fromEntries(byKind))}`);
      const idle = alive ? await gatesIdle(gw.url, keys.admin, 15_000) : {};
      const inFlight = Object.values(idle).reduce((n, g) => n + g.in_flight + g.queued, 0);
      const share = (results.length - bad.length) / Math.max(1, results.length);
      const growth = (after - before) / MB;
      return [
        {
          name: 'gateway crashes',
          target: '0',
          value: alive ? '0' : `1 (exit ${String(gw.child.exitCode ?? gw.child.signalCode)})`,
          pass: alive,
        },
        {
          name: `malformed requests answered as the contract says (JSON 4xx), of ${results.length}`,
          target: '100%',
          value: `${(share * 100).toFixed(2)}%`,
          pass: bad.length === 0 && results.length >= total,
          detail: {
            cases: results.length,
            broke: bad.length,
            fiveXx,
            ...Object.fromEntries(byKind),
          },
        },
        {
          name: 'RSS growth over the run',
          target: '< 30 MB',
          value: `${growth.toFixed(1)} MB`,
          pass: alive && growth < 30,
          detail: { beforeMB: before / MB, afterMB: after / MB, peakMB: peak / MB },
        },
        {
          name: 'requests in flight or queued afterwards',
          target: '0',
          value: String(inFlight),
          pass: alive && inFlight === 0,
        },
      ];
    } finally {
      await gw.close();
      await up.close();
    }
  },
};
