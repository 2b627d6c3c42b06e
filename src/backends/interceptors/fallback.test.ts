import { describe, expect, it } from 'vitest';
import type { BackendCall, BackendRequest, CallContext } from '../../contracts/backend.js';
import { syError, type ErrorCode } from '../../core/errors.js';
import { fallbackChain, type ChainLink } from './fallback.js';
import { manualClock, testContext } from '../../../test/support/call-context.js';

const clock = manualClock(1_000);
const REQ: BackendRequest = { op: 'chat', body: {} };

const ctx = (deadlineAt: number): CallContext => testContext({ deadlineAt });

/** A link that fails with `code` (or answers), noting the context it was called with. */
function link(name: string, code?: ErrorCode, firstByteShare?: number) {
  const seen: CallContext[] = [];
  const call: BackendCall = {
    call: (_r, c) => {
      seen.push(c);
      return code === undefined
        ? Promise.resolve({ json: { from: name } })
        : Promise.reject(syError(code));
    },
    stream: (_r, c) => {
      seen.push(c);
      return Promise.reject(syError(code ?? 'SY_ERR_OPERATION_UNSUPPORTED'));
    },
  };
  const l: ChainLink =
    firstByteShare === undefined ? { name, call } : { name, call, firstByteShare };
  return { link: l, seen };
}

describe('fallback chain', () => {
  it('gives every link but the last its first_byte_share of the remaining deadline (#13)', async () => {
    const firstByteOf = async (share: number): Promise<(number | undefined)[]> => {
      const a = link('a', 'SY_ERR_ATTEMPT_TIMEOUT', share);
      const b = link('b', 'SY_ERR_UPSTREAM_ERROR', share);
      const c = link('c', undefined, share);
      await fallbackChain('m', [a.link, b.link, c.link], clock).call(REQ, ctx(3_000));
      return [a.seen[0]!.firstByteBy, b.seen[0]!.firstByteBy, c.seen[0]!.firstByteBy];
    };
    // 2,000 ms left at 1,000: a and b may wait until their share ends; c, the last, gets it all.
    expect(await firstByteOf(0.5)).toEqual([2_000, 2_000, undefined]);
    expect(await firstByteOf(0.25)).toEqual([1_500, 1_500, undefined]);
  });

  it('does not cut a link that has no share (an in-process model)', async () => {
    const a = link('a', 'SY_ERR_INFERENCE_FAILED');
    const b = link('b');
    await fallbackChain('m', [a.link, b.link], clock).call(REQ, ctx(3_000));
    expect(a.seen[0]!.firstByteBy).toBeUndefined();
  });

  it('moves on from a link cut at its share, and keeps the caller context otherwise', async () => {
    const a = link('a', 'SY_ERR_ATTEMPT_TIMEOUT', 0.5);
    const b = link('b');
    const c = ctx(3_000);
    const answer = await fallbackChain('m', [a.link, b.link], clock).call(REQ, c);
    expect(answer.json).toEqual({ from: 'b' });
    expect(a.seen[0]!.attempts).toBe(c.attempts); // one route for the whole chain
    expect(b.seen[0]).toBe(c);
  });
});
