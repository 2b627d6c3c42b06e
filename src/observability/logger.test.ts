import { execFile } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { events, publish, type RequestDoneEvent } from '../core/events.js';
import { requestDone } from '../../test/support/events.js';
import { attachRequestLog, bufferedDestination, censorNested, createLogger } from './logger.js';

function capture(): { sink: Writable; lines: () => Record<string, unknown>[] } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString('utf8');
      cb();
    },
  });
  return {
    sink,
    lines: () =>
      text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('logger secret redaction', () => {
  it('censors secret keys at the top level and one level down, in written lines', () => {
    const { sink, lines } = capture();
    const logger = createLogger('info', sink);
    logger.info(
      {
        authorization: 'Bearer sk-top-secret',
        key: 'sy_live_abc',
        headers: { authorization: 'Bearer sk-header-secret', accept: 'json' },
        upstream: { api_key: 'sk-upstream-secret', url: 'http://u' },
        err: { key: 'nested-secret', message: 'boom' },
      },
      'by hand',
    );
    const [line] = lines();
    expect(line).toMatchObject({
      authorization: '[redacted]',
      key: '[redacted]',
      headers: { authorization: '[redacted]', accept: 'json' },
      upstream: { api_key: '[redacted]', url: 'http://u' },
      err: { key: '[redacted]', message: 'boom' },
      msg: 'by hand',
    });
    expect(JSON.stringify(line)).not.toMatch(/secret|sy_live/);
  });

  it('never changes the object it was given', () => {
    const nested = { api_key: 'sk-1', keep: 1 };
    const obj = { a: nested, b: [{ key: 'in-array' }] };
    const out = censorNested(obj);
    expect(out).not.toBe(obj);
    expect(out['a']).toEqual({ api_key: '[redacted]', keep: 1 });
    expect(nested.api_key).toBe('sk-1');
    expect(obj.a).toBe(nested);
  });

  it('returns a line without secrets as is, without copying it', () => {
    const line = { req_id: 'r1', status: 200, path: { to: 'chat' }, list: [1, 2] };
    expect(censorNested(line)).toBe(line);
  });
});

describe('the buffered stdout destination', () => {
  /** Minor GCs while `write` is called `n` times in one synchronous loop (a write in flight). */
  async function scavenges(write: (line: string) => void, n: number): Promise<number> {
    const { PerformanceObserver, constants } = await import('node:perf_hooks');
    let minor = 0;
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const detail = (e as { detail?: { kind?: number } }).detail;
        if (detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++;
      }
    });
    observer.observe({ entryTypes: ['gc'] });
    const line = `${JSON.stringify({ level: 30, msg: 'request', path: 'chat#1:ok', n: 'x'.repeat(250) })}\n`;
    for (let i = 0; i < n; i++) write(line);
    await new Promise((r) => setTimeout(r, 50));
    observer.disconnect();
    return minor;
  }

  /** A destination on a new file: the file's text, and its fd to close. */
  function fileDestination(): {
    dest: ReturnType<typeof bufferedDestination>;
    text: () => string;
    close: () => void;
  } {
    const file = join(mkdtempSync(join(tmpdir(), 'sy-log-')), 'out.log');
    const fd = openSync(file, 'w');
    return {
      dest: bufferedDestination(fd),
      text: () => readFileSync(file, 'utf8'),
      close: () => closeSync(fd),
    };
  }

  it('writes every line whole and in order, multi-byte text included', async () => {
    const { dest, text, close } = fileDestination();
    const sent: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const line = `{"i":${i},"text":"${i % 7 === 0 ? 'naïve café ✓ 日本語' : 'plain'}"}\n`;
      sent.push(line);
      dest.write(line);
    }
    await new Promise<void>((resolve, reject) =>
      dest.flush((err) => (err ? reject(err) : resolve())),
    );
    dest.flushSync();
    close();
    expect(text()).toBe(sent.join(''));
  });

  it('writes a partial block within the flush interval, and nothing more once it is written', async () => {
    const { dest, text, close } = fileDestination();
    dest.write('{"msg":"one line, far below a block"}\n');
    expect(text()).toBe('');
    await expect
      .poll(text, { timeout: 1_000, interval: 20 })
      .toBe('{"msg":"one line, far below a block"}\n');
    // Idle now: were the destination still writing on its timer (an empty write every 250 ms),
    // a write would reach the closed fd and fail with EBADF as an uncaught error.
    close();
    await new Promise((r) => setTimeout(r, 600));
  });

  it('makes a fraction of the garbage of sonic-boom text mode per line', async () => {
    const { pino } = await import('pino');
    const nullFd = openSync('/dev/null', 'w');
    const text = pino.destination({ dest: nullFd, sync: false, minLength: 4096 });
    const ours = bufferedDestination(nullFd);
    const n = 20_000;
    const textGcs = await scavenges((l) => text.write(l), n);
    const ourGcs = await scavenges((l) => ours.write(l), n);
    // Every write done (none still on the thread pool) before the fd goes.
    await new Promise<void>((resolve) => text.flush(() => resolve()));
    await new Promise<void>((resolve) => ours.flush(() => resolve()));
    closeSync(nullFd);
    // Text mode copies what it holds at every line (up to 16 KB here): ~160 MB for 20,000 lines.
    expect(textGcs).toBeGreaterThanOrEqual(5);
    expect(ourGcs * 5).toBeLessThanOrEqual(textGcs);
  });
});

describe('the request log', () => {
  const done = (over: Partial<RequestDoneEvent>): RequestDoneEvent =>
    requestDone('r', { tenant: 't', durationMs: 1.23456, ...over });
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

  it('writes one line per request at the end of the turn, in order, at its level', async () => {
    const out = capture();
    const detach = attachRequestLog(createLogger('info', out.sink));
    try {
      publish(events.requestDone, done({ requestId: 'a' }));
      publish(events.requestDone, done({ requestId: 'b', status: 503, code: 'SY_ERR_OVERLOADED' }));
      publish(events.requestDone, done({ requestId: 'c', degraded: ['fallback'] }));
      publish(
        events.requestDone,
        done({ requestId: 'd', status: 500, code: 'SY_ERR_INTERNAL', error: new Error('boom') }),
      );
      // Batched: nothing is formatted until the turn ends.
      expect(out.lines()).toEqual([]);
      await turn();
      const lines = out.lines();
      expect(lines.map((l) => [l['req_id'], l['level'], l['msg']])).toEqual([
        ['a', 30, 'request'],
        ['b', 40, 'request'],
        ['c', 40, 'request degraded'],
        ['d', 50, 'request failed'],
      ]);
      expect(lines[0]).toMatchObject({ tenant: 't', key_fp: 'fp', status: 200, ms: 1.235 });
      expect((lines[3]!['err'] as { message: string }).message).toBe('boom');
    } finally {
      detach();
    }
  });

  it('queues nothing below the level, and writes what is queued when detached', async () => {
    const out = capture();
    const detach = attachRequestLog(createLogger('warn', out.sink));
    publish(events.requestDone, done({ requestId: 'quiet' }));
    publish(events.requestDone, done({ requestId: 'loud', status: 502, code: 'SY_ERR_UPSTREAM' }));
    detach();
    expect(out.lines().map((l) => l['req_id'])).toEqual(['loud']);
    publish(events.requestDone, done({ requestId: 'after' }));
    await turn();
    expect(out.lines().map((l) => l['req_id'])).toEqual(['loud']);
  });

  it('writes the lines of the last turn when the process exits in it', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [
      '--import',
      'tsx',
      join(import.meta.dirname, '../../test/support/request-log-exit.ts'),
    ]);
    const lines = stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l['req_id'])).toEqual(['exit-1']);
  });
});
