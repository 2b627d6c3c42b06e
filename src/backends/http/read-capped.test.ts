import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  isSwitchyardError,
  syError,
  type ErrorCode,
  type SwitchyardError,
} from '../../core/errors.js';
import { readCapped, type Exchange } from './http-upstream.js';

/** An exchange around `body`, whose failures are BAD_RESPONSE with the cause's message. */
function exchangeOf(body: Readable, headers: Record<string, string> = {}): Exchange {
  return {
    status: 200,
    headers,
    body: body as unknown as Exchange['body'],
    done: () => undefined,
    discard: () => {
      body.destroy();
    },
    abort: () => undefined,
    failure: (err: unknown, code: ErrorCode): SwitchyardError =>
      isSwitchyardError(err) ? err : syError(code, (err as Error).message),
  } as unknown as Exchange;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return isSwitchyardError(err) ? `${err.code}: ${err.message}` : String(err);
  }
}

describe('readCapped', () => {
  it('joins the chunks of a body under its cap', async () => {
    const body = Readable.from([Buffer.from('{"a":'), Buffer.from('1}')], { objectMode: false });
    expect((await readCapped(exchangeOf(body), 100)).toString()).toBe('{"a":1}');
  });

  it('refuses a body past its cap, declared or read, and stops reading it', async () => {
    const declared = exchangeOf(Readable.from([Buffer.from('x')]), { 'content-length': '101' });
    expect(await codeOf(readCapped(declared, 100))).toMatch(/^SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE/);
    let pushed = 0;
    const endless = new Readable({
      read() {
        pushed++;
        this.push(Buffer.alloc(64));
      },
    });
    expect(await codeOf(readCapped(exchangeOf(endless), 1000))).toMatch(
      /^SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE/,
    );
    expect(endless.destroyed).toBe(true);
    expect(pushed).toBeLessThan(40);
  });

  it('fails (never hangs) on a body that errs, closes early, or was destroyed before the read', async () => {
    const errs = new Readable({ read() {} });
    const erring = readCapped(exchangeOf(errs), 100);
    errs.push(Buffer.from('{"a"'));
    errs.destroy(new Error('socket hang up'));
    expect(await codeOf(erring)).toMatch(/^SY_ERR_UPSTREAM_BAD_RESPONSE: .*socket hang up/);

    const cut = new Readable({ read() {} });
    const closing = readCapped(exchangeOf(cut), 100);
    cut.destroy();
    expect(await codeOf(closing)).toMatch(/^SY_ERR_UPSTREAM_BAD_RESPONSE: .*Premature close/);

    const gone = new Readable({ read() {} });
    gone.on('error', () => undefined); // as undici's body, which is never left without one
    gone.destroy(new Error('aborted earlier'));
    await new Promise((r) => setImmediate(r)); // its error and close events are past
    expect(await codeOf(readCapped(exchangeOf(gone), 100))).toMatch(
      /^SY_ERR_UPSTREAM_BAD_RESPONSE: .*aborted earlier/,
    );
    const closed = new Readable({ read() {} });
    closed.destroy();
    await new Promise((r) => setImmediate(r));
    expect(await codeOf(readCapped(exchangeOf(closed), 100))).toMatch(
      /^SY_ERR_UPSTREAM_BAD_RESPONSE: .*Premature close/,
    );
  });
});
