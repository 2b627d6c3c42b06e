import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): self time by area (Switchyard's
 * folders, dependencies, Node internals, GC), the top self-time and inclusive functions of
 * Switchyard itself (mapped from dist/ back to src/ through the build's source maps), and the
 * top self-time functions overall. Percentages are of the non-idle time.
 *
 * Usage: tsx bench/profile-summary.ts FILE.cpuprofile [--top N]
 */
interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface Row {
  readonly name: string;
  readonly where: string;
  readonly ms: number;
  readonly percent: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly sampledMs: number;
  readonly busyMs: number;
  readonly areas: readonly Row[];
  readonly ownSelf: readonly Row[];
  readonly ownInclusive: readonly Row[];
  readonly allSelf: readonly Row[];
}

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const DIST = pathToFileURL(resolve(ROOT, 'dist')).href + '/';
const maps = new Map<string, SourceMap | undefined>();

function sourceMapOf(url: string): SourceMap | undefined {
  if (!maps.has(url)) {
    const file = `${fileURLToPath(url)}.map`;
    maps.set(
      url,
      existsSync(file)
        ? new SourceMap(
            JSON.parse(readFileSync(file, 'utf8')) as ConstructorParameters<typeof SourceMap>[0],
          )
        : undefined,
    );
  }
  return maps.get(url);
}

/** `src/x/y.ts:line` for Switchyard's own code, else a short location. */
function locate(cf: CallFrame): { where: string; area: string; own: boolean } {
  const { url } = cf;
  if (url === '')
    return {
      where: '',
      area: cf.functionName.startsWith('(') ? cf.functionName : '(native)',
      own: false,
    };
  if (url.startsWith(DIST)) {
    const entry = sourceMapOf(url)?.findEntry(cf.lineNumber, cf.columnNumber) as
      { originalSource?: string; originalLine?: number } | undefined;
    let src = `dist/${url.slice(DIST.length)}`;
    let line = cf.lineNumber + 1;
    if (entry?.originalSource !== undefined) {
      src = relative(ROOT, fileURLToPath(new URL(entry.originalSource, url)));
      line = (entry.originalLine ?? 0) + 1;
    }
    const folder = src.split('/').slice(0, 2).join('/');
    return { where: `${src}:${line}`, area: `switchyard ${folder}/`, own: true };
  }
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 14).split('/');
    const pkg = rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
    return {
      where: `${pkg}/${rest.slice(pkg.split('/').length).join('/')}:${cf.lineNumber + 1}`,
      area: `dep ${pkg}`,
      own: false,
    };
  }
  if (url.startsWith('node:')) {
    const parts = url.split('/');
    const area = parts.length > 2 ? `${parts[0]}/${parts[1]}` : (parts[0] ?? url);
    return { where: `${url}:${cf.lineNumber + 1}`, area, own: false };
  }
  return { where: `${url}:${cf.lineNumber + 1}`, area: 'other', own: false };
}

function top(
  map: Map<string, { name: string; where: string; us: number }>,
  busyUs: number,
  n: number,
): Row[] {
  return [...map.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, n)
    .map((r) => ({
      name: r.name,
      where: r.where,
      ms: r.us / 1000,
      percent: (100 * r.us) / busyUs,
    }));
}

export function summarise(file: string, n = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const c of node.children ?? []) parent.set(c, node.id);
  }
  const info = new Map<number, ReturnType<typeof locate> & { key: string; name: string }>();
  for (const node of profile.nodes) {
    const loc = locate(node.callFrame);
    const name = node.callFrame.functionName || '(anonymous)';
    info.set(node.id, { ...loc, name, key: `${name}@${loc.where}` });
  }
  const self = new Map<string, { name: string; where: string; us: number }>();
  const own = new Map<string, { name: string; where: string; us: number }>();
  const inclusive = new Map<string, { name: string; where: string; us: number }>();
  const areas = new Map<string, { name: string; where: string; us: number }>();
  const add = (m: typeof self, key: string, name: string, where: string, us: number): void => {
    const r = m.get(key);
    if (r === undefined) m.set(key, { name, where, us });
    else r.us += us;
  };
  let sampledUs = 0;
  let idleUs = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    sampledUs += us;
    const me = info.get(id)!;
    if (me.name === '(idle)') {
      idleUs += us;
      return;
    }
    add(self, me.key, me.name, me.where, us);
    add(areas, me.area, me.area, '', us);
    if (me.own) add(own, me.key, me.name, me.where, us);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = info.get(cur)!;
      if (!f.own || seen.has(f.key)) continue;
      seen.add(f.key);
      add(inclusive, f.key, f.name, f.where, us);
    }
  });
  const busyUs = Math.max(1, sampledUs - idleUs);
  return {
    file,
    sampledMs: sampledUs / 1000,
    busyMs: busyUs / 1000,
    areas: top(areas, busyUs, n),
    ownSelf: top(own, busyUs, n),
    ownInclusive: top(inclusive, busyUs, n),
    allSelf: top(self, busyUs, n),
  };
}

export function formatSummary(s: ProfileSummary): string {
  const rows = (title: string, list: readonly Row[]): string[] => [
    `${title}:`,
    ...list.map(
      (r) =>
        `  ${r.percent.toFixed(1).padStart(5)}%  ${r.name}${r.where === '' ? '' : `  (${r.where})`}`,
    ),
  ];
  return [
    `Profile ${relative(ROOT, s.file)}: ${(s.sampledMs / 1000).toFixed(1)} s sampled, ${(s.busyMs / 1000).toFixed(1)} s busy (percentages of busy time)`,
    ...rows('Self time by area', s.areas),
    ...rows('Switchyard functions, self time', s.ownSelf),
    ...rows('Switchyard functions, inclusive time', s.ownInclusive),
    ...rows('All functions, self time', s.allSelf),
  ].join('\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: tsx bench/profile-summary.ts FILE.cpuprofile [--top N]\n');
    process.exit(2);
  }
  const i = process.argv.indexOf('--top');
  const n = i > 0 ? Number(process.argv[i + 1]) : 20;
  process.stdout.write(`${formatSummary(summarise(resolve(file), n))}\n`);
}
