import { execFileSync } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RequestAbortController } from './abort.js';
import { Pool, request } from './undici.js';

describe('RequestAbortController', () => {
  it('aborts once: listeners and onabort run, with the reason', () => {
    const c = new RequestAbortController();
    const seen: unknown[] = [];
    c.signal.addEventListener('abort', () => seen.push(c.signal.reason));
    c.signal.onabort = () => seen.push('onabort');
    expect(c.signal.aborted).toBe(false);
    expect(() => c.signal.throwIfAborted()).not.toThrow();
    c.abort('why');
    c.abort('again');
    expect(c.signal.aborted).toBe(true);
    expect(c.signal.reason).toBe('why');
    expect(seen).toEqual(['onabort', 'why']);
    expect(() => c.signal.throwIfAborted()).toThrow('why');
  });

  it('gives an AbortError DOMException when no reason is given, like AbortController', () => {
    const c = new RequestAbortController();
    c.abort();
    expect(c.signal.reason).toBeInstanceOf(DOMException);
    expect((c.signal.reason as DOMException).name).toBe('AbortError');
  });

  it("is a signal Node's own APIs accept and obey", async () => {
    const timer = new RequestAbortController();
    const slept = sleep(60_000, undefined, { signal: timer.signal });
    timer.abort(new Error('stop sleeping'));
    await expect(slept).rejects.toThrow();

    const ev = new RequestAbortController();
    const waited = once(new EventEmitter(), 'never', { signal: ev.signal });
    ev.abort();
    await expect(waited).rejects.toThrow(/abort/i);
  });

  it('aborts an undici request in flight', async () => {
    const server = createServer(() => undefined); // never answers
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const c = new RequestAbortController();
      const pending = request(pool, { path: '/', method: 'GET', signal: c.signal });
      setTimeout(() => c.abort(new Error('client gone')), 20);
      await expect(pending).rejects.toThrow('client gone');
    } finally {
      await pool.destroy();
      server.closeAllConnections();
      server.close();
    }
  });

  it('dies young: 200k controllers with listeners promote almost nothing to the old generation', () => {
    const abortJs = fileURLToPath(new URL('../../dist/core/abort.js', import.meta.url));
    const script = `
      const { RequestAbortController } = await import(${JSON.stringify(abortJs)});
      let keep = [];
      for (let i = 0; i < 200000; i++) {
        const c = new RequestAbortController();
        const f = () => i;
        c.signal.addEventListener('abort', f, { once: true });
        c.signal.removeEventListener('abort', f);
        keep.push(c);
        if (keep.length > 50) keep = [];
        if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
      }`;
    const log = execFileSync(
      process.execPath,
      ['--trace-gc-nvp', '--input-type=module', '-e', script],
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
    );
    let promoted = 0;
    for (const m of log.matchAll(/ promoted=(\d+)/g)) promoted += Number(m[1]);
    // Node's AbortController promotes ~70 MB in the same loop (see abort.ts).
    expect(promoted / 1048576).toBeLessThan(5);
  });
});

describe('RequestAbortSignal listeners (as an EventTarget keeps them)', () => {
  it('runs each listener once, in order; a listener added twice counts once; removed ones never', () => {
    const c = new RequestAbortController();
    const seen: string[] = [];
    const a = (): number => seen.push('a');
    const b = (): number => seen.push('b');
    const gone = (): number => seen.push('gone');
    c.signal.addEventListener('abort', a);
    c.signal.addEventListener('abort', gone, { once: true });
    c.signal.addEventListener('abort', b, { once: true });
    c.signal.addEventListener('abort', a);
    c.signal.addEventListener('abort', {
      handleEvent: (e: Event) => seen.push(`object:${e.type}`),
    });
    c.signal.addEventListener('other', () => seen.push('other'));
    c.signal.removeEventListener('abort', gone);
    c.abort();
    c.abort();
    expect(seen).toEqual(['a', 'b', 'object:abort']);
  });

  it('gives listeners the event with the signal as its target, and `this` as the signal', () => {
    const c = new RequestAbortController();
    const seen: unknown[] = [];
    c.signal.addEventListener('abort', function (this: unknown, e: Event) {
      seen.push(e.target, this);
    });
    c.abort('why');
    expect(seen[0]).toBe(c.signal);
    expect(seen[1]).toBe(c.signal);
  });

  it('drops a listener when its `signal` option aborts, and ignores one given an aborted one', () => {
    const c = new RequestAbortController();
    const until = new RequestAbortController();
    const seen: string[] = [];
    c.signal.addEventListener('abort', () => seen.push('kept'));
    c.signal.addEventListener('abort', () => seen.push('dropped'), { signal: until.signal });
    until.abort();
    c.signal.addEventListener('abort', () => seen.push('never'), { signal: until.signal });
    c.abort();
    expect(seen).toEqual(['kept']);
  });

  it('does not run a listener that an earlier one removed during the same abort', () => {
    const c = new RequestAbortController();
    const seen: string[] = [];
    const second = (): number => seen.push('second');
    c.signal.addEventListener('abort', () => {
      seen.push('first');
      c.signal.removeEventListener('abort', second);
    });
    c.signal.addEventListener('abort', second);
    c.abort();
    expect(seen).toEqual(['first']);
  });

  it('holds no listener after it aborted, and a listener added after that never runs', () => {
    const c = new RequestAbortController();
    const seen: string[] = [];
    c.abort();
    c.signal.addEventListener('abort', () => seen.push('late'));
    c.abort();
    expect(seen).toEqual([]);
  });
});
