import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import prettier from 'prettier';

/**
 * Writes the tables of bench/README.md from bench/results/<bench>-latest.json: each section
 * between `<!-- results:<bench> -->` and `<!-- /results:<bench> -->` is replaced by what the
 * latest run measured, with the command that produced it. The prose around the markers is
 * written by hand. `npm run bench:readme` rewrites the file; `-- --check` only says whether it is
 * up to date (exit 1 if not).
 */

type Json = Record<string, unknown>;
type Format = (r: Json) => string;

const ROOT = join(import.meta.dirname, '..');
export const README = join(ROOT, 'bench/README.md');
export const RESULTS = join(ROOT, 'bench/results');

// ---- helpers ----

const num = (v: unknown, digits = 2): string =>
  typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '—';
const int = (v: unknown): string =>
  typeof v === 'number' && Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—';
const pct = (v: unknown, digits = 1): string =>
  typeof v === 'number' && Number.isFinite(v) ? `${(v * 100).toFixed(digits)}%` : '—';
const mb = (bytes: unknown): string =>
  typeof bytes === 'number' ? (bytes / 1024 / 1024).toFixed(1) : '—';
const yes = (pass: unknown): string => (pass === true ? 'met' : 'not met');
/** A string or number as text; anything else as empty. */
const str = (v: unknown): string =>
  typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
const obj = (v: unknown): Json => (v !== null && typeof v === 'object' ? (v as Json) : {});
const arr = (v: unknown): Json[] => (Array.isArray(v) ? (v as Json[]) : []);

/** A Markdown table; numbers are right-aligned by the caller's choice of `align`. */
function table(
  head: readonly string[],
  rows: readonly (readonly string[])[],
  align?: string,
): string {
  const a = align ?? head.map((_, i) => (i === 0 ? 'l' : 'r')).join('');
  const sep = head.map((_, i) => (a[i] === 'r' ? '---:' : '---'));
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(sep), ...rows.map(line)].join('\n');
}

function runLine(command: string, at: unknown, extra = ''): string {
  const when =
    typeof at === 'string' ? at.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC') : 'unknown';
  return `Command: \`${command}\`. Last run: ${when}${extra}.`;
}

function quick(r: Json, settingsQuick?: unknown): string {
  return (settingsQuick ?? r['quick']) === true ? ' -- --quick' : '';
}

/** `{name, limit|target, value, pass}[]` as a table (without a limit column when none has one). */
function targets(list: readonly Json[]): string {
  if (list.length === 0) return '';
  const limit = (t: Json): string => str(t['limit'] ?? t['target']);
  const withLimit = list.some((t) => limit(t) !== '');
  return table(
    ['target', ...(withLimit ? ['limit'] : []), 'this run', ''],
    list.map((t) => [
      String(t['name']),
      ...(withLimit ? [limit(t)] : []),
      String(t['value']),
      yes(t['pass']),
    ]),
    withLimit ? 'lllr' : 'llr',
  );
}

// ---- one formatter per benchmark ----

const overhead: Format = (r) => {
  const s = obj(r['settings']);
  const soak = typeof s['soakS'] === 'number' && s['soakS'] > 0 ? ` -- --soak ${s['soakS']}` : '';
  const cases = arr(r['cases']);
  const load = table(
    [
      'case',
      'req/s',
      'p50 ms',
      'p99 ms',
      'CPU ms/req',
      'RSS idle MB',
      'RSS under load (max) MB',
      'RSS after MB',
    ],
    cases.map((c) => {
      const t = obj(c['throughput']);
      const l = obj(t['latency']);
      return [
        String(c['label']),
        int(t['reqPerS']),
        num(l['p50']),
        num(l['p99']),
        num(c['cpuMsPerRequest'], 3),
        mb(c['rssIdleBytes']),
        mb(c['rssMaxUnderLoadBytes']),
        mb(c['rssAfterIdleBytes']),
      ];
    }),
  );
  const seq = cases.filter((c) => c['sequentialDirect'] !== undefined);
  const one = table(
    ['case', 'p50 ms', 'p99 ms', 'direct p50 ms (paired)', 'added p50 ms'],
    seq.map((c) => {
      const q = obj(c['sequential']);
      const d = obj(c['sequentialDirect']);
      return [
        String(c['label']),
        num(q['p50'], 3),
        num(q['p99'], 3),
        num(d['p50'], 3),
        num(Number(q['p50']) - Number(d['p50']), 3),
      ];
    }),
  );
  const soakPart = obj(r['soak']);
  const soakLine =
    r['soak'] === undefined
      ? ''
      : `\n\nSoak, ${int(soakPart['durationS'])} s: ${int(obj(soakPart['throughput'])['reqPerS'])} req/s, ` +
        `${int(obj(soakPart['throughput'])['non2xx'])} non-2xx, ${int(obj(soakPart['throughput'])['errors'])} errors; ` +
        `RSS ${num(soakPart['firstWindowAvgMB'], 1)} MB over the first ${int(soakPart['windowS'])} s, ` +
        `${num(soakPart['lastWindowAvgMB'], 1)} MB over the last (${num(soakPart['growthMB'], 1)} MB).`;
  const il = obj(r['interleaved']);
  const interleavedLine =
    r['interleaved'] === undefined
      ? []
      : [
          `Interleaved, ${int(il['blocks'])} blocks of ${int(il['blockS'])} s each, the two alternating: the floor ` +
            `${num(il['floorCpuMsPerRequest'], 3)} ms, Switchyard ${num(il['switchyardCpuMsPerRequest'], 3)} ms CPU per ` +
            `request (**${num(il['ratio'])}×**, the #14 ratio).`,
        ];
  const cpu = obj(r['cpu']);
  return [
    runLine(
      `npm run bench:overhead${soak}${quick(r, s['quick'])}`,
      r['timestamp'],
      `, Node ${String(r['node'])}, ${int(cpu['cores'])} cores (${String(cpu['model'])}), revision ${String(r['revision'])}`,
    ),
    load,
    'One request at a time:',
    one + soakLine,
    ...interleavedLine,
    targets(arr(r['targets'])),
  ].join('\n\n');
};

const onnx: Format = (r) => {
  const s = obj(r['settings']);
  const rows: string[][] = [];
  for (const m of arr(r['results']))
    for (const [mode, key] of [
      [
        `batched (max ${str(obj(s['batch'])['max'])}, ${Number(obj(s['batch'])['delay_us']) / 1000} ms)`,
        'batched',
      ],
      ['max batch 1', 'unbatched'],
    ] as const) {
      const x = obj(m[key]);
      const g = obj(x['gateway']);
      rows.push([
        String(m['model']),
        mode,
        num(obj(x['load'])['reqPerS'], 1),
        num(g['meanBatch'], 1),
        num(obj(g['queueDelayMs'])['p99']),
        `${num(obj(g['inferMs'])['p50'])}–${num(obj(g['inferMs'])['p99'])}`,
        num(obj(g['eventLoopDelayMs'])['p99'], 1),
        pct(g['workerStartedShare']),
      ]);
    }
  const judged = arr(r['results']).find((m) => m['judged'] === true);
  const t = obj(judged?.['targets']);
  const labels: Record<string, string> = {
    speedup5x: `batched ≥ 5× max batch 1 (${num(judged?.['speedupVsUnbatched'])}×)`,
    rawShare50: `≥ 50% of raw ONNX Runtime at the same batch size (${pct(judged?.['shareOfRaw'])})`,
    eventLoopP99Under20ms: 'event-loop delay p99 ≤ 20 ms while saturated',
    queueP99WithinOwnBound: `queue delay ≤ max delay + one batch's inference, p99 (${pct(obj(obj(judged?.['batched'])['gateway'])['withinBoundShare'], 2)} within)`,
  };
  const cpu = obj(r['cpu']);
  return [
    runLine(
      `npm run bench:onnx${quick(r, s['quick'])}`,
      r['timestamp'],
      `, Node ${String(r['node'])}, ${int(cpu['cores'])} cores, load average ${num(obj(r['loadAverage1m'])['before'])} before`,
    ),
    table(
      [
        'model',
        'mode',
        'req/s',
        'mean batch',
        'queue p99 ms',
        'infer p50–p99 ms',
        'event-loop p99 ms',
        'started by the worker',
      ],
      rows,
      'llrrrrrr',
    ),
    judged === undefined
      ? ''
      : table(
          [`target (\`${String(judged['model'])}\`)`, ''],
          Object.entries(t).map(([k, v]) => [labels[k] ?? k, yes(v)]),
          'lr',
        ),
  ].join('\n\n');
};

const journeys: Format = (r) => {
  const o = obj(r['overhead']);
  const m = obj(r['mix']);
  const n = Number(m['requests']);
  const share = (rec: unknown) =>
    Object.entries(obj(rec))
      .map(([k, v]) => `${k} ${pct(Number(v) / n)}`)
      .join(', ');
  return [
    runLine(`npm run bench:journeys${quick(r)}`, r['at'], `, Node ${String(r['node'])}`),
    table(
      [`overhead, ${int(o['stages'])} stages (${int(o['requests'])} requests)`, 'result'],
      [
        [
          'CPU per request, minus the model stub (the runner alone)',
          `**${num(o['overhead_us'], 1)} µs** (target ≤ 50 µs)`,
        ],
        ...(r['pipeline'] === undefined
          ? []
          : [
              [
                'CPU per request through the model-call pipeline (admission scope, gate, record), minus the backend',
                `**${num(obj(r['pipeline'])['overhead_us'], 1)} µs** (target ≤ 30 µs)`,
              ],
            ]),
        [
          'wall p50 / mean / p99 per request',
          `${num(o['wall_p50_us'], 1)} / ${num(o['wall_mean_us'], 1)} / ${num(o['wall_p99_us'], 1)} µs`,
        ],
        ['scripted model call alone (CPU)', `${num(o['model_stub_cpu_us'], 1)} µs`],
      ],
      'll',
    ),
    table(
      [`example traffic mix (${int(n)} requests)`, 'result'],
      [
        ['answered by', share(m['answeredBy'])],
        ['cache outcome', share(m['cache'])],
        ['decisions', share(m['decisions'])],
        ['failed', int(m['failed'])],
        [
          'cost per 1k requests',
          `**${num(m['costPer1k'])}** vs **${num(m['centralBaselinePer1k'], 0)}** always asking \`chat-large\` (−${num(m['savedPercent'], 1)}%)`,
        ],
      ],
      'll',
    ),
  ].join('\n\n');
};

const retrieval: Format = (r) => {
  const row = (name: string, x: Json, shardsPerQuery = '') => [
    name + shardsPerQuery,
    String(x['ef']),
    num(x['recall'], 3),
    int(x['qps']),
    num(x['p95Ms'], 3),
    int(x['cpuQps']),
    num(x['cpuP50Ms'], 3),
    num(x['cpuP95Ms'], 3),
  ];
  const single = obj(r['singleShard']);
  const sg = obj(r['shardedVsGlobal']);
  return [
    runLine(
      str(r['command']) || 'npm run bench:retrieval',
      r['date'],
      `, ${int(obj(r['machine'])['cpus'])} cores`,
    ),
    `${int(r['vectors'])} clustered ${int(r['dims'])}-d vectors, ${int(r['queries'])} queries, k=${int(r['k'])}, ` +
      `HNSW quantization ${String(obj(r['hnsw'])['quantization'])}; each setup at the smallest ef reaching recall@10 ≥ 0.95.`,
    table(
      [
        'setup',
        'ef',
        'recall@10',
        'QPS (wall)',
        'p95 ms (wall)',
        'QPS (CPU time)',
        'p50 ms (CPU)',
        'p95 ms (CPU)',
      ],
      [
        row('single shard, no filter', obj(single['atTarget'])),
        row('global index + geo filter', obj(obj(sg['global'])['atTarget'])),
        row(
          'geo shards',
          obj(obj(sg['sharded'])['atTarget']),
          `, ${num(sg['shardsPerQuery'])} shards/query`,
        ),
      ],
      'lrrrrrrr',
    ),
    `Single shard meets its target (≥ 8k CPU QPS at recall ≥ 0.95): ${single['meetsTarget'] === true ? 'yes' : 'no'}. ` +
      `Geo shards beat the filtered global index on p95 at equal recall: ${sg['shardedWins'] === true ? 'yes' : 'no'} ` +
      `(global / sharded CPU p95 = ${num(sg['p95RatioCpu'])}).`,
  ].join('\n\n');
};

const overload: Format = (r) => {
  const rows: string[][] = [];
  for (const run of arr(r['runs']))
    for (const cls of ['interactive', 'background']) {
      const c = obj(run[cls]);
      rows.push([
        String(run['name']),
        cls,
        int(c['sent']),
        num(c['okPct']),
        num(c['p50'], 1),
        num(c['p99'], 1),
        `${int(c['shed'])} (${int(c['shedWithRetryAfter'])} with Retry-After)`,
        c['rejectP50'] === null ? '—' : `${num(c['rejectP50'], 1)} / ${num(c['rejectP99'], 1)}`,
        int(c['failed']),
      ]);
    }
  return [
    runLine(`npm run bench:overload${quick(r)}`, r['at']),
    `Upstream: ${int(obj(r['upstream'])['slots'])} slots × ${int(obj(r['upstream'])['serviceMs'])} ms; capacity C = ${int(r['capacity'])} req/s ` +
      `(unloaded p50 ${num(r['unloadedP50'], 1)} ms); offered 3 × C, ${int(Number(r['measureMs']) / 1000)} s measured.`,
    table(
      [
        'run',
        'class',
        'sent',
        'ok %',
        'ok p50 ms',
        'ok p99 ms',
        'shed 429/503',
        'rejection p50 / p99 ms',
        'failed',
      ],
      rows,
      'llrrrrrrr',
    ),
    'Goodput: ' +
      arr(r['runs'])
        .map((x) => `${String(x['name'])} ${num(x['goodputPerS'], 1)} req/s`)
        .join(', ') +
      '.',
    targets(arr(r['targets'])),
  ].join('\n\n');
};

const quotaReplicas: Format = (r) => {
  const rows: string[][] = [];
  for (const setup of arr(r['results']))
    for (const t of arr(setup['tenants']))
      rows.push([
        String(setup['name']),
        String(t['tenant']),
        int(t['offered']),
        int(t['admitted']),
        int(t['allowedTotal']),
        int(t['busiestWindow']),
        num(Number(t['busiestWindow']) / Number(r['limit'])),
      ]);
  return [
    runLine(`npm run bench:quota-replicas${quick(r)}`, r['at']),
    `Each tenant: ${int(r['limit'])} requests per ${int(r['windowS'])} s, offered 3 × that for ${int(Number(r['durationMs']) / 1000)} s; ` +
      `local fallback decisions: ${arr(r['results'])
        .map((x) => int(x['localDecisions']))
        .join(' / ')}.`,
    table(
      [
        'setup',
        'tenant',
        'offered',
        'admitted',
        'allowed (limit × windows + burst)',
        'busiest window',
        'busiest / limit',
      ],
      rows,
      'llrrrrr',
    ),
  ].join('\n\n');
};

const release: Format = (r) => {
  const res = obj(r['resolve']);
  const sh = obj(r['shadow']);
  return [
    runLine(
      `npm run bench:release${quick(r)}`,
      r['at'],
      `, load average ${num(arr(r['loadavg'])[0])}`,
    ),
    table(
      ['measure', 'result', 'target'],
      [
        [
          `slot resolution, ${int(res['experiments'])} live experiments (busiest slot: ${int(res['experimentsOnSlot'])})`,
          `${num(Number(res['nsPerResolve']) / 1000)} µs`,
          '≤ 5 µs',
        ],
        [
          `p99 at ${int(sh['rate_rps'])} rps open loop, no shadow / 100% shadow`,
          `${num(obj(sh['plain'])['p99_ms'], 1)} ms / ${num(obj(sh['shadowed'])['p99_ms'], 1)} ms (ratio ${num(sh['p99_ratio'])})`,
          'ratio ≤ 1.05',
        ],
        [
          'shadow copies actually sent (the rest shed on event-loop lag)',
          pct(sh['mirrored_share']),
          '—',
        ],
      ],
      'lrr',
    ),
  ].join('\n\n');
};

const features: Format = (r) => {
  const row = (name: string, x: unknown) => {
    const o = obj(x);
    return [
      name,
      num(o['p50Us']),
      num(o['p99Us']),
      Number(o['p99Us']) <= Number(r['targetP99Us']) ? 'yes' : 'no',
    ];
  };
  return [
    runLine(`npm run bench:features${quick(r)}`, r['at']),
    `Reads of ${int(r['featuresPerRead'])} features of a random user among ${int(r['users'])}, with the SQLite write-behind on ` +
      `and ${int(r['backgroundWrites'])} values written meanwhile; target p99 ≤ ${int(Number(r['targetP99Us']) / 1000)} ms.`,
    table(
      ['path', 'p50 µs', 'p99 µs', 'p99 within target'],
      [
        row('store API `read` (in process)', r['storeRead']),
        row('`features` stage path: read + retrieval filter + input strip', r['featuresStage']),
        row('HTTP `GET /v1/features/{user}?names=…`', r['httpRead']),
      ],
      'lrrl',
    ),
  ].join('\n\n');
};

const faults: Format = (r) =>
  [
    runLine(
      `npm run bench:faults${quick(r)}`,
      r['at'],
      `, Node ${String(r['node'])}: ${int(r['passed'])} of ${int(r['total'])} targets met`,
    ),
    ...arr(r['scenarios']).map(
      (s) =>
        `**${String(s['title'])}** (\`${String(s['id'])}\`)\n\n` +
        table(
          ['target', 'limit', 'this run', ''],
          arr(s['targets']).map((t) => [
            String(t['name']),
            String(t['target']),
            String(t['value']),
            t['pass'] === true ? 'PASS' : 'FAIL',
          ]),
          'lllr',
        ),
    ),
  ].join('\n\n');

/** Every leaf of a result but its header fields, as `path | value` rows. */
function leaves(v: unknown, path: string, out: string[][]): void {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v as Json))
      leaves(x, path === '' ? k : `${path}.${k}`, out);
    return;
  }
  if (Array.isArray(v)) {
    out.push([
      path,
      v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join('; '),
    ]);
    return;
  }
  out.push([path, typeof v === 'number' ? String(Math.round(v * 1000) / 1000) : String(v)]);
}

/** A bench whose result has no table of its own yet: its measured values, path by path. */
const generic =
  (bench: string): Format =>
  (r) => {
    const rows: string[][] = [];
    for (const [k, v] of Object.entries(r))
      if (!['bench', 'at', 'node', 'revision', 'quick'].includes(k)) leaves(v, k, rows);
    return [
      runLine(
        `npm run bench:${bench}${quick(r)}`,
        r['at'] ?? r['timestamp'],
        typeof r['node'] === 'string' ? `, Node ${r['node']}` : '',
      ),
      table(['measure', 'this run'], rows, 'll'),
    ].join('\n\n');
  };

/** bench:record's #15 ratio: two gateways up at once, loaded in alternating blocks. */
function interleavedRecord(il: Json, sequential: string): string {
  const pair = arr(il['pair']).map(String);
  const cpu = arr(il['cpuMsPerRequest']).map((x) => num(x, 3));
  const threads = arr(il['threadCpuMsPerRequest']).map(
    (x) => `${num(obj(x)['main'], 3)} / ${num(obj(x)['others'], 3)}`,
  );
  const gc = arr(il['gcPer1000']).map((x) => {
    const minor = obj(obj(x)['minor']);
    return `${num(minor['count'], 1)} scavenges, ${num(minor['ms'], 1)} ms`;
  });
  return (
    `CPU per request, ${pair.join(' / ')}, interleaved (both gateways up, ${int(il['blocks'])} blocks of ${int(il['blockS'])} s each, in turn): ` +
    `${cpu.join(' and ')} ms, **${num(il['ratio'])}×** (block by block ${arr(il['blockRatios'])
      .map((x) => num(x))
      .join(', ')}; ` +
    `the cases below, a minute or more apart: ${sequential}×). Event loop / other threads: ${threads.join(' and ')} ms; ` +
    `per 1,000 requests: ${gc.join(' and ')}.`
  );
}

const record: Format = (r) => {
  const s = obj(r['settings']);
  const cpu = obj(r['cpu']);
  const cases = table(
    [
      'case',
      'req/s',
      'CPU ms/req',
      'of which event loop / other threads',
      'p99 ms',
      'event-loop delay p99 ms',
      'steady: req/s, p99 ms',
      'steady: event-loop delay p99 ms',
      'OTLP exports',
      'log rows',
    ],
    arr(r['cases']).map((c) => {
      const t = obj(c['throughput']);
      const steady = obj(c['steady']);
      return [
        String(c['label']),
        int(t['reqPerS']),
        num(c['cpuMsPerRequest'], 3),
        c['mainThreadCpuMsPerRequest'] === undefined
          ? '—'
          : `${num(c['mainThreadCpuMsPerRequest'], 3)} / ${num(c['otherThreadsCpuMsPerRequest'], 3)}`,
        num(obj(t['latency'])['p99']),
        num(c['eventLoopDelayP99Ms']),
        `${int(steady['offeredPerS'])}, ${num(steady['latencyP99Ms'])}`,
        num(steady['eventLoopDelayP99Ms']),
        int(obj(c['exports'])['requests']),
        int(c['logRequestRecords']),
      ];
    }),
  );
  const parts = [
    runLine(
      `npm run bench:record${quick(r, s['quick'])}`,
      r['timestamp'],
      `, Node ${String(r['node'])}, ${int(cpu['cores'])} cores (${String(cpu['model'])}), revision ${String(r['revision'])}`,
    ),
    r['interleaved'] === undefined
      ? `CPU per request, on / off: **${num(r['cpuRatio'])}×**.`
      : interleavedRecord(obj(r['interleaved']), num(r['cpuRatio'])),
    cases,
  ];
  const log = (x: Json, name: string): string[] => [
    name,
    int(x['offeredPerS']),
    `${int(x['storedTotal'])} / ${int(x['offered'])}`,
    int(x['dropped']),
    int(x['sustainedPerS']),
    int(x['capacityPerS']),
    num(x['writeMsMax'], 1),
  ];
  if (r['log'] !== undefined)
    parts.push(
      table(
        [
          'embedded log (recorder → batch → SQLite WAL)',
          'offered records/s',
          'read back / offered',
          'dropped',
          'sustained records/s',
          'records/s while writing',
          'longest batch ms',
        ],
        [
          log(obj(r['log']), 'well above the target rate'),
          ...(r['logAtGatewayRate'] === undefined
            ? []
            : [log(obj(r['logAtGatewayRate']), 'at the `on` case’s rate')]),
        ],
      ),
    );
  if (r['shutdown'] !== undefined && r['kill'] !== undefined) {
    const g = obj(r['shutdown']);
    const k = obj(r['kill']);
    parts.push(
      table(
        ['loss', 'answered 2xx', 'recorded', 'lost', 'detail'],
        [
          [
            'SIGTERM with requests in flight',
            int(g['answered2xx']),
            int(g['recorded']),
            int(g['lost']),
            `exit ${str(obj(g['exit'])['code'])} after ${int(g['exitMs'])} ms`,
          ],
          [
            `SIGKILL, flush_ms ${int(k['flushMs'])}`,
            int(k['answered2xx']),
            int(k['recorded']),
            int(k['lost']),
            `lost answers from the last ${int(k['lostWindowMs'])} ms before the kill`,
          ],
        ],
        'lrrrl',
      ),
    );
  }
  const t = r['targets'];
  parts.push(
    Array.isArray(t)
      ? targets(arr(t))
      : table(
          ['target', ''],
          Object.entries(obj(t)).map(([name, pass]) => [name, yes(pass)]),
          'lr',
        ),
  );
  return parts.join('\n\n');
};

export const FORMATS: Readonly<Record<string, Format>> = {
  overhead,
  onnx,
  journeys,
  retrieval,
  overload,
  'quota-replicas': quotaReplicas,
  release,
  features,
  faults,
  tree: generic('tree'),
  stream: generic('stream'),
  wakeup: generic('wakeup'),
  'otlp-encode': generic('otlp-encode'),
  workers: generic('workers'),
  'object-spread': generic('object-spread'),
  record,
};

/** The README with every results section rewritten from `results` (bench name → JSON). */
export function renderReadme(readme: string, results: (bench: string) => Json | undefined): string {
  return readme.replace(
    /<!-- results:([a-z-]+) -->\n[\s\S]*?<!-- \/results:\1 -->/g,
    (_m, bench: string) => {
      const r = results(bench);
      const format = FORMATS[bench];
      const body =
        format === undefined
          ? `No formatter for \`${bench}\` in bench/readme.ts.`
          : r === undefined
            ? `No results yet: run \`npm run bench:${bench}\`.`
            : format(r);
      return `<!-- results:${bench} -->\n\n${body.trim()}\n\n<!-- /results:${bench} -->`;
    },
  );
}

/** `bench/results/<bench>-latest.json`, parsed, if it exists. */
export function latest(bench: string): Json | undefined {
  const file = join(RESULTS, `${bench}-latest.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Json) : undefined;
}

/** The README as `npm run bench:readme` writes it: rendered, then formatted as the repo formats Markdown. */
export async function nextReadme(current: string): Promise<string> {
  const options = (await prettier.resolveConfig(README)) ?? {};
  return prettier.format(renderReadme(current, latest), { ...options, filepath: README });
}

if (process.argv[1] !== undefined && import.meta.filename === process.argv[1]) {
  const current = readFileSync(README, 'utf8');
  const next = await nextReadme(current);
  if (process.argv.includes('--check')) {
    if (next !== current) {
      process.stderr.write('bench/README.md is out of date: run `npm run bench:readme`\n');
      process.exit(1);
    }
  } else if (next !== current) {
    writeFileSync(README, next);
    process.stdout.write('bench/README.md updated\n');
  } else process.stdout.write('bench/README.md is up to date\n');
}
