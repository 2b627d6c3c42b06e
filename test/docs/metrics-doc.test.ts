import { describe, expect, it } from 'vitest';
import { DOC_FILES, readDoc } from './doc-files.js';
import { PERSONALIZATION_CHANNELS } from '../../src/contracts/policy.js';
import { events } from '../../src/core/events.js';
import { Metrics } from '../../src/observability/metrics.js';
import { expandBraces, inlineCode } from './config-doc.js';

const page = readDoc('docs/observability.md');

/** Every metric Switchyard registers, with its label names (prom-client's defaults aside). */
function registered(): Map<string, readonly string[]> {
  const m = new Metrics({ defaultMetrics: false });
  try {
    // Vector shard gauges are registered when a vector host is; register them here too.
    m.trackVectorShards(() => Promise.resolve([]));
    const out = new Map<string, readonly string[]>();
    for (const metric of m.registry.getMetricsAsArray() as unknown as {
      name: string;
      labelNames?: readonly string[];
    }[])
      out.set(metric.name, metric.labelNames ?? []);
    return out;
  } finally {
    m.close();
  }
}

/** The metric table of docs/observability.md: name → the labels its row names. */
function documented(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of page.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const name = /^`([a-z0-9_]+)`$/.exec(cells[1] ?? '')?.[1];
    if (name === undefined || !/^(switchyard|gen_ai)_/.test(name)) continue;
    out.set(
      name,
      [...(cells[3] ?? '').matchAll(/`([a-z_]+)`/g)].map((x) => x[1]!),
    );
  }
  return out;
}

describe('the metrics reference (docs/observability.md)', () => {
  const metrics = registered();
  const table = documented();

  it('lists every metric src/observability/metrics.ts registers, with its labels', () => {
    expect(metrics.size).toBeGreaterThan(40);
    for (const [name, labels] of metrics) {
      expect(table.has(name), `${name} is not in the table`).toBe(true);
      expect(table.get(name), `labels of ${name}`).toEqual([...labels]);
    }
  });

  it('lists no metric that is not registered', () => {
    expect([...table.keys()].filter((n) => !metrics.has(n))).toEqual([]);
  });

  it('names every channel hot code publishes on', () => {
    const channels = [
      ...Object.values(events).map((c) => String(c.name)),
      ...Object.values(PERSONALIZATION_CHANNELS),
    ];
    expect(channels.length).toBeGreaterThan(20);
    for (const ch of channels) expect(page, ch).toContain(`\`${ch}\``);
  });
});

describe('the docs and the README', () => {
  it('name only metrics that exist', () => {
    const metrics = registered();
    const exists = (name: string): boolean =>
      metrics.has(name) || metrics.has(name.replace(/_(bucket|sum|count)$/, ''));
    const labels = new Set([...metrics.values()].flat());
    const bad: string[] = [];
    for (const f of DOC_FILES)
      for (const code of inlineCode(readDoc(f))) {
        if (labels.has(code.trim())) continue;
        // A field of error bodies (errors.md), not a metric.
        if (code.trim() === 'switchyard_code') continue;
        const m = /^((?:switchyard|gen_ai)_[a-z0-9_{},]*?)(\{[^}]*\})?$/.exec(code.trim());
        if (m === null) continue;
        // `name{label,...}` names labels; `prefix_{a,b}` stands for several metrics.
        const names = m[2] !== undefined && exists(m[1]!) ? [m[1]!] : expandBraces(code.trim());
        for (const n of names) if (!exists(n)) bad.push(`${f}: ${code}`);
      }
    expect(bad).toEqual([]);
  });
});
