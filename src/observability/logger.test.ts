import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { censorNested, createLogger } from './logger.js';

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
