import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { Client } from 'undici';
import type {
  LatencySummary,
  LoadCommand,
  LoadReply,
  ProbeResult,
  SequentialResult,
  Target,
  ThroughputResult,
} from './lib/protocol.js';

/**
 * The load generator, a child of overhead.ts pinned to its own core so that its CPU never mixes
 * with the measured process. It takes commands over IPC: a closed-loop autocannon run for
 * throughput, and a sequential undici loop (one request at a time) for latency.
 */

/** A growable list of float samples. */
class Samples {
  private data = new Float64Array(1 << 16);
  private n = 0;

  add(v: number): void {
    if (this.n === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.n++] = v;
  }

  summary(): LatencySummary {
    const s = this.data.slice(0, this.n).sort();
    const at = (q: number): number =>
      s.length === 0 ? 0 : s[Math.max(0, Math.ceil(q * s.length) - 1)]!;
    let sum = 0;
    for (const v of s) sum += v;
    return {
      count: s.length,
      mean: s.length === 0 ? 0 : sum / s.length,
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      max: at(1),
    };
  }
}

async function probe(target: Target): Promise<ProbeResult> {
  const url = new URL(target.url);
  const client = new Client(url.origin);
  try {
    const res = await client.request({
      path: url.pathname,
      method: 'POST',
      headers: target.headers,
      body: target.body,
    });
    return {
      status: res.statusCode,
      contentType: String(res.headers['content-type'] ?? ''),
      body: await res.body.text(),
    };
  } finally {
    await client.close();
  }
}

function throughput(
  targets: readonly Target[],
  connections: number,
  durationS: number,
): Promise<ThroughputResult> {
  const first = targets[0]!;
  const latencies = new Samples();
  let responses = 0;
  let non2xx = 0;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: first.url,
        connections,
        duration: durationS,
        pipelining: 1,
        timeout: 10,
        method: 'POST',
        headers: first.headers,
        body: first.body,
        ...(targets.length > 1
          ? {
              requests: targets.map((t) => ({
                method: 'POST',
                path: new URL(t.url).pathname,
                headers: { ...t.headers },
                body: t.body,
              })),
            }
          : {}),
      },
      (err, result) => {
        if (err !== null) {
          reject(err);
          return;
        }
        const wallS = (performance.now() - started) / 1000;
        resolve({
          responses,
          ok: responses - non2xx,
          non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          wallS,
          reqPerS: (responses - non2xx) / wallS,
          latency: latencies.summary(),
        });
      },
    );
    instance.on('response', (_client, status, _bytes, ms) => {
      responses++;
      if (status >= 200 && status < 300) latencies.add(ms);
      else non2xx++;
    });
  });
}

async function sequential(
  targets: readonly Target[],
  warmup: number,
  count: number,
  blocks: number,
): Promise<SequentialResult> {
  const runs = targets.map((t) => {
    const url = new URL(t.url);
    return {
      target: t,
      path: url.pathname,
      client: new Client(url.origin, { pipelining: 1 }),
      samples: new Samples(),
      failures: 0,
    };
  });
  const once = async (r: (typeof runs)[number], record: boolean): Promise<void> => {
    const t0 = performance.now();
    const res = await r.client.request({
      path: r.path,
      method: 'POST',
      headers: r.target.headers,
      body: r.target.body,
    });
    await res.body.arrayBuffer();
    const ms = performance.now() - t0;
    if (res.statusCode !== 200) r.failures++;
    else if (record) r.samples.add(ms);
  };
  try {
    for (const r of runs) for (let i = 0; i < warmup; i++) await once(r, false);
    const perBlock = Math.ceil(count / blocks);
    for (let b = 0; b < blocks; b++) {
      for (const r of runs) for (let i = 0; i < perBlock; i++) await once(r, true);
    }
  } finally {
    await Promise.all(runs.map((r) => r.client.close()));
  }
  const byTarget: Record<string, LatencySummary & { failures: number }> = {};
  for (const r of runs) byTarget[r.target.name] = { ...r.samples.summary(), failures: r.failures };
  return { byTarget };
}

function run(cmd: LoadCommand): Promise<unknown> {
  switch (cmd.type) {
    case 'probe':
      return probe(cmd.target);
    case 'throughput':
      return throughput(cmd.targets, cmd.connections, cmd.durationS);
    case 'sequential':
      return sequential(cmd.targets, cmd.warmup, cmd.count, cmd.blocks);
  }
}

process.on('message', (cmd: LoadCommand) => {
  run(cmd).then(
    (result) => process.send!({ id: cmd.id, ok: true, result } satisfies LoadReply),
    (err: unknown) =>
      process.send!({
        id: cmd.id,
        ok: false,
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
      } satisfies LoadReply),
  );
});
process.on('disconnect', () => process.exit(0));
process.stdout.write('READY load\n');
