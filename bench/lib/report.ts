import type { LatencySummary, ThroughputResult } from './protocol.js';
import { MB } from './proc-stats.js';

/** What one case measured. */
export interface CaseResult {
  readonly name: string;
  readonly label: string;
  /** Which process was measured (the system under test). */
  readonly measured: string;
  readonly stream: boolean;
  readonly throughput: ThroughputResult;
  /** CPU time of the process under test during the measured load phase, per 2xx response. */
  readonly cpuMsPerRequest: number;
  /** Its CPU time over the phase's wall time (100% = one core busy). */
  readonly sutCpuPercent: number;
  /** Upstream + load generator + driver, all pinned to the load core. */
  readonly loadCoreCpuPercent: number;
  readonly upstreamCpuMsPerRequest: number;
  readonly rssIdleBytes: number;
  readonly rssMaxUnderLoadBytes: number;
  readonly rssAfterIdleBytes: number;
  readonly sequential: LatencySummary & { readonly failures: number };
  /** The direct upstream measured alternately with this case, one request at a time. */
  readonly sequentialDirect?: LatencySummary & { readonly failures: number };
  readonly profile?: string;
}

/** The floor and Switchyard in alternating blocks of a few seconds (bench/overhead.ts). */
export interface InterleavedResult {
  readonly blocks: number;
  readonly blockS: number;
  readonly floorCpuMsPerRequest: number;
  readonly switchyardCpuMsPerRequest: number;
  readonly ratio: number;
}

export interface SoakResult {
  readonly durationS: number;
  readonly sampleEveryS: number;
  readonly windowS: number;
  readonly samples: readonly { readonly atS: number; readonly rssMB: number }[];
  readonly firstWindowAvgMB: number;
  readonly lastWindowAvgMB: number;
  readonly growthMB: number;
  readonly growthPercent: number;
  readonly throughput: ThroughputResult;
}

export interface Target {
  readonly name: string;
  readonly limit: string;
  readonly value: string;
  readonly pass: boolean | undefined;
}

const f = (n: number, digits = 2): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const mb = (bytes: number): string => f(bytes / MB, 1);

export function addedP50(c: CaseResult): number | undefined {
  return c.sequentialDirect === undefined ? undefined : c.sequential.p50 - c.sequentialDirect.p50;
}

/** The three targets of the overhead budget; `undefined` when the case was not run. */
export function evaluateTargets(
  cases: readonly CaseResult[],
  interleaved?: InterleavedResult,
): Target[] {
  const sy = cases.find((c) => c.name === 'switchyard');
  const floor = cases.find((c) => c.name === 'floor');
  const on = cases.find((c) => c.name === 'slow-admission-on');
  const off = cases.find((c) => c.name === 'slow-admission-off');
  const loaded = cases.filter((c) => c.name.startsWith('switchyard'));
  // Read from the interleaved blocks when they ran: the sequential cases are a minute apart.
  const ratio =
    interleaved !== undefined
      ? interleaved.ratio
      : sy !== undefined && floor !== undefined
        ? sy.cpuMsPerRequest / floor.cpuMsPerRequest
        : undefined;
  const kept =
    on !== undefined && off !== undefined
      ? on.throughput.reqPerS / off.throughput.reqPerS
      : undefined;
  const added = sy === undefined ? undefined : addedP50(sy);
  const rss = loaded.reduce((m, c) => Math.max(m, c.rssMaxUnderLoadBytes), 0);
  return [
    {
      name: 'gateway CPU per proxied non-streamed request',
      limit: '<= 0.35 ms',
      value: sy === undefined ? 'not run' : `${f(sy.cpuMsPerRequest, 3)} ms`,
      pass: sy === undefined ? undefined : sy.cpuMsPerRequest <= 0.35,
    },
    {
      name: 'added latency p50 at concurrency 1 (non-streamed, vs direct)',
      limit: '<= 0.3 ms',
      value: added === undefined ? 'not run' : `${f(added, 3)} ms`,
      pass: added === undefined ? undefined : added <= 0.3,
    },
    {
      name:
        interleaved === undefined
          ? 'gateway CPU per proxied request vs the floor proxy in the same run (#14)'
          : 'gateway CPU per proxied request vs the floor proxy, interleaved blocks (#14)',
      limit: '<= 2.0×',
      value: ratio === undefined ? 'not run' : `${f(ratio, 2)}×`,
      pass: ratio === undefined ? undefined : ratio <= 2.0,
    },
    {
      name: 'throughput with admission on vs off, 200 connections, 20 ms upstream (#14)',
      limit: '>= 95%',
      value: kept === undefined ? 'not run' : `${f(kept * 100, 1)}%`,
      pass: kept === undefined ? undefined : kept >= 0.95,
    },
    {
      name: 'gateway RSS under 50-connection load (max over Switchyard cases)',
      limit: '<= 120 MB',
      value: loaded.length === 0 ? 'not run' : `${mb(rss)} MB`,
      pass: loaded.length === 0 ? undefined : rss <= 120 * MB,
    },
  ];
}

export interface ReportHeader {
  readonly title: string;
  readonly lines: readonly string[];
}

export function markdown(
  header: ReportHeader,
  cases: readonly CaseResult[],
  targets: readonly Target[],
  soak: SoakResult | undefined,
  interleaved?: InterleavedResult,
): string {
  const out: string[] = [`## ${header.title}`, '', ...header.lines, ''];
  out.push(
    '### Throughput (closed loop)',
    '',
    '| case | measured process | req/s | p50 ms | p99 ms | CPU ms/req | its core % | load core % | RSS idle MB | RSS max under load MB | RSS after idle MB | non-2xx / errors |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const c of cases) {
    const t = c.throughput;
    out.push(
      `| ${c.label} | ${c.measured} | ${f(t.reqPerS, 0)} | ${f(t.latency.p50)} | ${f(t.latency.p99)} | ${f(c.cpuMsPerRequest, 3)} | ${f(c.sutCpuPercent, 0)} | ${f(c.loadCoreCpuPercent, 0)} | ${mb(c.rssIdleBytes)} | ${mb(c.rssMaxUnderLoadBytes)} | ${mb(c.rssAfterIdleBytes)} | ${t.non2xx} / ${t.errors + t.timeouts} |`,
    );
  }
  out.push(
    '',
    '### One request at a time (concurrency 1)',
    '',
    '| case | p50 ms | p90 ms | p99 ms | direct p50 ms (paired) | added p50 ms | added p99 ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const c of cases) {
    const s = c.sequential;
    const d = c.sequentialDirect;
    out.push(
      `| ${c.label} | ${f(s.p50, 3)} | ${f(s.p90, 3)} | ${f(s.p99, 3)} | ${d === undefined ? '—' : f(d.p50, 3)} | ${d === undefined ? '—' : f(s.p50 - d.p50, 3)} | ${d === undefined ? '—' : f(s.p99 - d.p99, 3)} |`,
    );
  }
  const sy = cases.find((c) => c.name === 'switchyard');
  const floor = cases.find((c) => c.name === 'floor');
  if (sy !== undefined && floor !== undefined) {
    out.push(
      '',
      `Switchyard vs the floor proxy (non-streamed): ${f(sy.cpuMsPerRequest - floor.cpuMsPerRequest, 3)} ms more CPU per request ` +
        `(${f(sy.cpuMsPerRequest / floor.cpuMsPerRequest, 2)}x), ${f(sy.throughput.reqPerS / floor.throughput.reqPerS, 2)}x its req/s.`,
    );
  }
  if (interleaved !== undefined) {
    out.push(
      '',
      `Interleaved (${interleaved.blocks} blocks of ${interleaved.blockS} s each, alternating): the floor ${f(interleaved.floorCpuMsPerRequest, 3)} ms, ` +
        `Switchyard ${f(interleaved.switchyardCpuMsPerRequest, 3)} ms CPU per request (${f(interleaved.ratio, 2)}x).`,
    );
  }
  if (soak !== undefined) {
    out.push(
      '',
      `### Soak (${soak.durationS} s, non-streamed and streamed requests alternating, RSS every ${soak.sampleEveryS} s)`,
      '',
      `RSS first ${soak.windowS} s avg ${f(soak.firstWindowAvgMB, 1)} MB, last ${soak.windowS} s avg ${f(soak.lastWindowAvgMB, 1)} MB: ` +
        `growth ${f(soak.growthMB, 1)} MB (${f(soak.growthPercent, 1)}%); ${f(soak.throughput.reqPerS, 0)} req/s, ` +
        `${soak.throughput.non2xx} non-2xx, ${soak.throughput.errors + soak.throughput.timeouts} errors.`,
      '',
      `Samples (s: MB): ${soak.samples.map((s) => `${f(s.atS, 0)}: ${f(s.rssMB, 1)}`).join(', ')}`,
    );
  }
  out.push('', '### Targets', '');
  for (const t of targets) {
    const verdict = t.pass === undefined ? 'SKIP' : t.pass ? 'PASS' : 'FAIL';
    out.push(`- ${verdict} ${t.name}: ${t.value} (target ${t.limit})`);
  }
  return out.join('\n') + '\n';
}
