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
  sse,
  startUpstream,
  type Behaviour,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * Issue #13, finding 9: a client that sends its request and then half-closes its side
 * (shutdown(SHUT_WR)) got no answer from routes that call an upstream (0 of 100, logged as 499):
 * with Node's default `httpAllowHalfOpen = false` the server's 'end' handler ends the socket
 * while the answer is still being made. The answer must be written, and the connection closed
 * after it. The gateway runs as a child process.
 */
const CHAT = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };

/** Chat answers come late enough that the client's FIN always arrives first. */
const upstreamBehaviour: Behaviour = (req, res, call) => {
  const stream = (JSON.parse(call.body || '{}') as { stream?: boolean }).stream === true;
  const answer = stream ? sse(['a', 'b', 'c'], { delayMs: 10 }) : json(200, chatCompletion('hi'));
  return delayed(50, answer)(req, res, call);
};

describe('a client that half-closes after its request (#13, finding 9)', () => {
  let up: TestUpstream;
  let gw: ProcessGateway;
  let keys: AdminKeys;
  let port: number;
  const auth = (): Record<string, string> => ({ authorization: `Bearer ${keys.user}` });

  beforeAll(async () => {
    up = await startUpstream(upstreamBehaviour);
    keys = adminKeys();
    gw = await startProcessGateway({
      config: {
        tenants: keys.tenants,
        models: { chat: openaiModel(up.url) },
      },
    });
    port = Number(new URL(gw.url).port);
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  it('still gets its chat answer, 50 times out of 50, and the connection closes after it', async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        rawConversation(port, rawPost('/v1/chat/completions', CHAT, auth()), {
          halfClose: true,
          timeoutMs: 10_000,
        }),
      ),
    );
    for (const c of results) {
      expect(c.responses.map((r) => r.status)).toEqual([200]);
      const body = JSON.parse(c.responses[0]!.body.toString()) as { object: string };
      expect(body.object).toBe('chat.completion');
      expect(c.closed).toBe(true);
    }
  });

  it('gets every answer to requests it pipelined before half-closing, in order, then the close', async () => {
    const c = await rawConversation(
      port,
      rawPost('/v1/chat/completions', CHAT, auth()) +
        `GET /v1/models HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${keys.user}\r\n\r\n` +
        rawPost('/v1/chat/completions', CHAT, auth()),
      { halfClose: true, timeoutMs: 10_000 },
    );
    expect(c.responses.map((r) => r.status)).toEqual([200, 200, 200]);
    expect((JSON.parse(c.responses[1]!.body.toString()) as { object: string }).object).toBe('list');
    expect(c.closed).toBe(true);
  });

  it('gets a whole streamed answer, through [DONE], then the close', async () => {
    const c = await rawConversation(
      port,
      rawPost('/v1/chat/completions', { ...CHAT, stream: true }, auth()),
      { halfClose: true, timeoutMs: 10_000 },
    );
    const text = c.bytes.toString('utf8');
    // Interim 100 Continue answers may come first (the gateway checks the client is still there).
    expect(text).toMatch(/^(HTTP\/1\.1 100 Continue\r\n\r\n)*HTTP\/1\.1 200 /);
    expect(text).toContain('data: [DONE]');
    expect(c.closed).toBe(true);
  });

  it('tells a half-close from a client that closed completely, and stops the upstream call of the latter', async () => {
    up.behave(hang);
    const before = up.calls.length;
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(rawPost('/v1/chat/completions', CHAT, auth()));
    await waitFor(() => up.calls.length > before, 10_000);
    // A FIN, like a half-close, but the socket is gone: the next bytes written to it are reset.
    socket.destroy();
    const call = up.calls[before]!;
    // The deadline is 30 s away: only noticing the client has gone ends the call this soon.
    await waitFor(() => call.aborted, 10_000);
    expect(call.aborted).toBe(true);
    up.behave(upstreamBehaviour);
  });

  it('leaves nothing in flight afterwards', async () => {
    const after = await gatesIdle(gw.url, keys.admin);
    expect(after['chat']?.in_flight, JSON.stringify(after)).toBe(0);
  });
});

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
}
