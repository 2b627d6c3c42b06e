import { seededRandom } from '../../src/core/random.js';
import { startProcessGateway } from '../../test/support/gateway-process.js';
import { chatCompletion, hang, json, startUpstream } from '../../test/support/upstream.js';
import { runOpenLoop } from '../lib/open-loop.js';
import type { FaultScenario, FaultTargetResult } from './scenario.js';

/**
 * Issue #13, finding 3: a model whose upstream accepts connections and never answers ran every
 * request into a 504 at the deadline under the defaults (its first-byte timeout was the
 * deadline), never used its fallback, and never opened its breaker. Target: >= 99% of requests
 * answered by the fallback within the deadline. The config is the default one apart from the
 * model's `fallback:`. Two client deadlines: none sent (the default, 30 s), and 2 s sent in
 * `x-switchyard-timeout-ms` (an interactive client). Each run starts a fresh gateway (breaker
 * closed) and sends an open-loop Poisson load; the black hole never answers, so every 200
 * comes from the fallback, and it counts only if it came within the deadline.
 */
interface Run {
  readonly label: string;
  /** The client's deadline, ms; undefined sends no header (the default applies). */
  readonly deadlineMs: number | undefined;
  readonly ratePerS: number;
  readonly durationMs: number;
}

const DEFAULT_DEADLINE_MS = 30_000;
const TARGET = 0.99;
const BODY = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });

export const scenario: FaultScenario = {
  id: 'blackhole',
  title: 'Black-holed upstream with a fallback: answered by the fallback within the deadline',
  async run(ctx) {
    const runs: readonly Run[] = [
      {
        label: 'default deadline (30 s)',
        deadlineMs: undefined,
        ratePerS: 1,
        durationMs: ctx.quick ? 15_000 : 60_000,
      },
      {
        label: '2 s client deadline',
        deadlineMs: 2_000,
        ratePerS: 20,
        durationMs: ctx.quick ? 5_000 : 30_000,
      },
    ];
    const hole = await startUpstream(hang);
    const backup = await startUpstream(json(200, chatCompletion('from-backup')));
    const results: FaultTargetResult[] = [];
    try {
      for (const run of runs) {
        const deadline = run.deadlineMs ?? DEFAULT_DEADLINE_MS;
        const gw = await startProcessGateway({
          config: {
            models: {
              chat: { backend: 'openai', url: `${hole.url}/v1`, fallback: ['backup'] },
              backup: { backend: 'openai', url: `${backup.url}/v1` },
            },
          },
        });
        try {
          const holeBefore = hole.calls.length;
          const backupBefore = backup.calls.length;
          const samples = await runOpenLoop({
            origin: gw.url,
            path: '/v1/chat/completions',
            durationMs: run.durationMs,
            classes: [
              {
                name: 'chat',
                ratePerS: run.ratePerS,
                headers: {
                  authorization: `Bearer ${gw.key}`,
                  ...(run.deadlineMs === undefined
                    ? {}
                    : { 'x-switchyard-timeout-ms': String(run.deadlineMs) }),
                },
                body: BODY,
              },
            ],
            connections: 256,
            timeoutMs: deadline + 5_000,
            random: seededRandom(run.ratePerS),
          });
          const inTime = samples.filter((s) => s.status === 200 && s.latencyMs <= deadline);
          const share = inTime.length / samples.length;
          const latencies = inTime.map((s) => s.latencyMs).sort((a, b) => a - b);
          const counts = new Map<number, number>();
          for (const s of samples) counts.set(s.status, (counts.get(s.status) ?? 0) + 1);
          const statuses = [...counts].map(([status, n]) => `${status}:${n}`).join(' ');
          ctx.log(
            `${run.label}, ${run.ratePerS} rps: ${samples.length} requests, ${inTime.length} answered in time, ` +
              `statuses ${statuses}, black hole saw ${hole.calls.length - holeBefore}, ` +
              `fallback saw ${backup.calls.length - backupBefore}, ` +
              `max latency ${Math.round(latencies.at(-1) ?? 0)} ms`,
          );
          results.push({
            name: `answered by the fallback within the deadline, ${run.label}, ${run.ratePerS} rps`,
            target: `>= ${(TARGET * 100).toFixed(0)}%`,
            value: `${(share * 100).toFixed(2)}%`,
            pass: samples.length > 0 && share >= TARGET,
            detail: {
              requests: samples.length,
              answeredInTime: inTime.length,
              statuses,
              blackHoleAttempts: hole.calls.length - holeBefore,
              fallbackCalls: backup.calls.length - backupBefore,
              deadlineMs: deadline,
            },
          });
        } finally {
          await gw.close();
        }
      }
    } finally {
      await hole.close();
      await backup.close();
    }
    return results;
  },
};
