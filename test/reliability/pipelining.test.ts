import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminKeys, gatesIdle, type AdminKeys } from '../support/gate-state.js';
import { openaiModel } from '../support/gateway.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { rawConversation, rawPost } from '../support/raw-http.js';
import {
  chatCompletion,
  delayed,
  hang,
  json,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * Issue #13, finding 1: a request's admission slot and in-flight count were released on its
 * response's 'close', which never fires for a response queued behind a pipelined one on a
 * connection that died. 30 such connections pinned a model at its concurrency limit for good,
 * and SIGTERM waited the whole drain. Each test runs the built gateway as a child process.
 */
const LIMIT = 4;
const CHAT = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };

describe('pipelined requests on a connection that dies (#13, finding 1)', () => {
  let up: TestUpstream;
  let gw: ProcessGateway;
  let keys: AdminKeys;
  let port: number;
  const post = (): string =>
    rawPost('/v1/chat/completions', CHAT, { authorization: `Bearer ${keys.user}` });

  beforeAll(async () => {
    // Slow enough that the second request is still being served when the connection dies.
    up = await startUpstream(delayed(30, json(200, chatCompletion())));
    keys = adminKeys();
    gw = await startProcessGateway({
      config: {
        // A long drain: a leaked in-flight request would hold SIGTERM for all of it.
        server: { host: '127.0.0.1', port: 0, drain_ms: 120_000 },
        tenants: keys.tenants,
        models: { chat: openaiModel(up.url) },
        admission: {
          concurrency: { algorithm: 'fixed', initial_limit: LIMIT, max_queue: 1_000 },
        },
      },
    });
    port = Number(new URL(gw.url).port);
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  const chatOk = async (): Promise<number> => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys.user}`, 'content-type': 'application/json' },
      body: JSON.stringify(CHAT),
    });
    await res.arrayBuffer();
    return res.status;
  };

  it('answers two pipelined chats and then the garbage after them, in order, on 30 connections, and frees every slot', async () => {
    for (let i = 0; i < 30; i++) {
      const c = await rawConversation(port, post() + post() + 'BLAH\r\n\r\n', {
        timeoutMs: 10_000,
      });
      // Pipelined answers keep their order: both chats, then the 400 for the garbage line.
      expect(c.responses.map((r) => r.status)).toEqual([200, 200, 400]);
      expect(errorCode(c.responses[2]!.body)).toBe('SY_ERR_MALFORMED_HTTP');
      expect(c.closed).toBe(true);
    }
    const after = await gatesIdle(gw.url, keys.admin);
    expect(after['chat']?.in_flight, JSON.stringify(after)).toBe(0);
    expect(after['chat']?.queued).toBe(0);
    // Twice the limit at once still gets through: no slot is pinned.
    const statuses = await Promise.all(Array.from({ length: LIMIT * 2 }, chatOk));
    expect(statuses).toEqual(Array.from({ length: LIMIT * 2 }, () => 200));
  }, 60_000);

  it('frees every slot when clients pipeline three chats and hang up after the first answer', async () => {
    for (let i = 0; i < 30; i++) {
      const c = await rawConversation(port, post() + post() + post(), {
        hangUpAfter: 1,
        timeoutMs: 10_000,
      });
      expect(c.responses[0]?.status).toBe(200);
    }
    const after = await gatesIdle(gw.url, keys.admin);
    expect(after['chat']?.in_flight, JSON.stringify(after)).toBe(0);
    const statuses = await Promise.all(Array.from({ length: LIMIT * 2 }, chatOk));
    expect(statuses).toEqual(Array.from({ length: LIMIT * 2 }, () => 200));
  }, 60_000);

  it('stops the upstream call of a request queued behind another once its client is gone', async () => {
    up.behave(hang);
    const before = up.calls.length;
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(post() + post());
    // Both requests reach the upstream: the second one while its answer waits behind the first.
    await waitFor(() => up.calls.length >= before + 2, 10_000);
    // A reset: a bare FIN could be a half-close (see half-close.test.ts) and is served on.
    socket.resetAndDestroy();
    const calls = up.calls.slice(before);
    // The deadline is 30 s: only the client's departure can end these calls this soon.
    await waitFor(() => calls.every((c) => c.aborted), 10_000);
    expect(calls.map((c) => c.aborted)).toEqual([true, true]);
    up.behave(delayed(30, json(200, chatCompletion())));
    const after = await gatesIdle(gw.url, keys.admin);
    expect(after['chat']?.in_flight, JSON.stringify(after)).toBe(0);
  });

  it('shuts down on SIGTERM without waiting out the drain, since no request is left in flight', async () => {
    // SIGKILL after 20 s: a process still draining (for 120 s) exits by that signal, not with 0.
    await gw.stop(20_000);
    expect(await gw.exited()).toBe(0);
  }, 30_000);
});

function errorCode(body: Buffer): string {
  return (JSON.parse(body.toString()) as { error: { code: string } }).error.code;
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
}
