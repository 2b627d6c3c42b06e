import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { rawRequest, type RawAnswer } from '../support/raw-http.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/** Issue 2, input safety: body and header limits and slow clients, each answered in JSON. */
const BODY_LIMIT = 16_384;
const HEADER_LIMIT = 8_192;
const HEADERS_TIMEOUT_MS = 400;
const REQUEST_TIMEOUT_MS = 800;

function errorCode(a: RawAnswer): string | undefined {
  expect(a.headers['content-type']).toMatch(/^application\/json/);
  const body = JSON.parse(a.body.toString('utf8')) as { error: { code: string } };
  return body.error.code;
}

describe('HTTP limits', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  let port: number;

  beforeAll(async () => {
    up = await startUpstream(json(200, chatCompletion()));
    gw = await startTestGateway({
      config: {
        server: {
          host: '127.0.0.1',
          port: 0,
          limits: {
            body_bytes: BODY_LIMIT,
            header_bytes: HEADER_LIMIT,
            headers_timeout_ms: HEADERS_TIMEOUT_MS,
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            // Node checks the two timeouts only this often; see TOOLCHAIN.md.
            timeout_check_interval_ms: 50,
          },
        },
        models: { chat: openaiModel(up.url) },
      },
    });
    port = Number(new URL(gw.url).port);
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  const head = (extra: string): string =>
    'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
    `Authorization: Bearer ${gw.key}\r\nContent-Type: application/json\r\n${extra}\r\n`;

  it('refuses a declared body over the limit with 413 before reading it, and closes', async () => {
    const before = up.calls.length;
    // Only the head is sent: the answer cannot depend on the body having arrived.
    const a = await rawRequest(port, head(`Content-Length: ${BODY_LIMIT * 64}\r\n`), {
      timeoutMs: 5_000,
      untilClose: true,
    });
    expect(a.closed).toBe(true);
    expect(a.status).toBe(413);
    expect(errorCode(a)).toBe('SY_ERR_BODY_TOO_LARGE');
    expect(a.headers['connection']).toBe('close');
    expect(up.calls.length).toBe(before);
  });

  it('refuses a chunked body at the first byte past the limit, while it is still arriving', async () => {
    const before = up.calls.length;
    const chunk = `${(4096).toString(16)}\r\n${'x'.repeat(4096)}\r\n`;
    // The first write already passes the limit; 200 more chunks would follow, 20 ms apart.
    const first = head('Transfer-Encoding: chunked\r\n') + chunk.repeat(BODY_LIMIT / 4096 + 1);
    const a = await rawRequest(port, first, {
      timeoutMs: 5_000,
      untilClose: true,
      drip: { chunks: Array.from({ length: 200 }, () => chunk), everyMs: 20 },
    });
    expect(a.closed).toBe(true);
    expect(a.status).toBe(413);
    expect(errorCode(a)).toBe('SY_ERR_BODY_TOO_LARGE');
    expect(a.headers['connection']).toBe('close');
    // Answered long before the client would have finished sending (200 x 20 ms).
    expect(a.ms).toBeLessThan(4_000 - 1_000);
    expect(up.calls.length).toBe(before);
  });

  it('accepts a body just under the limit', async () => {
    const content = 'y'.repeat(BODY_LIMIT - 200);
    const body = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content }] });
    expect(body.length).toBeLessThanOrEqual(BODY_LIMIT);
    const a = await rawRequest(
      port,
      head(`Content-Length: ${body.length}\r\nConnection: close\r\n`) + body,
    );
    expect(a.status).toBe(200);
  });

  it('answers oversized headers with a JSON 431 and closes', async () => {
    const a = await rawRequest(
      port,
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(HEADER_LIMIT + 100)}\r\n\r\n`,
      { untilClose: true },
    );
    expect(a.status).toBe(431);
    expect(errorCode(a)).toBe('SY_ERR_HEADERS_TOO_LARGE');
    expect(a.closed).toBe(true);
  });

  it('answers a slowloris client with a JSON 408 once the header timeout passes, and closes', async () => {
    // One header byte every 50 ms: the headers would take 25 s to arrive.
    const drip = Array.from({ length: 500 }, (_, i) => (i % 10 === 9 ? '\r\n' : 'a'));
    const a = await rawRequest(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ', {
      timeoutMs: 20_000,
      untilClose: true,
      drip: { chunks: drip, everyMs: 50 },
    });
    expect(a.status).toBe(408);
    expect(errorCode(a)).toBe('SY_ERR_REQUEST_TIMEOUT');
    expect(a.closed).toBe(true);
    // It fired at the configured timeout, not at Node's 30 s default check interval.
    expect(a.ms).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
    expect(a.ms).toBeLessThan(10_000);
  });

  it('answers a body that trickles in slower than the request timeout with a JSON 408', async () => {
    const before = up.calls.length;
    const a = await rawRequest(port, head('Content-Length: 1000\r\n') + '{"model":', {
      timeoutMs: 20_000,
      untilClose: true,
      drip: { chunks: Array.from({ length: 500 }, () => ' '), everyMs: 50 },
    });
    expect(a.status).toBe(408);
    expect(errorCode(a)).toBe('SY_ERR_REQUEST_TIMEOUT');
    expect(a.closed).toBe(true);
    expect(a.ms).toBeLessThan(10_000);
    expect(up.calls.length).toBe(before);
  });
});

/**
 * Issue #13, finding 6: after an early 413 the rest of the upload is read and discarded, so the
 * client reads the answer instead of a reset; `linger_bytes` and `linger_ms` bound that work.
 */
describe('reading the rest of a refused upload, bounded', () => {
  const start = (limits: Record<string, number>): Promise<TestGateway> =>
    startTestGateway({
      config: {
        server: {
          host: '127.0.0.1',
          port: 0,
          // Node's own request timeout must not be what ends these exchanges.
          limits: { body_bytes: BODY_LIMIT, request_timeout_ms: 120_000, ...limits },
        },
      },
    });
  const head = (key: string, extra: string): string =>
    'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
    `Authorization: Bearer ${key}\r\nContent-Type: application/json\r\n${extra}\r\n`;

  let bytesBound: TestGateway;
  let timeBound: TestGateway;
  beforeAll(async () => {
    bytesBound = await start({ linger_bytes: 65_536, linger_ms: 60_000 });
    timeBound = await start({ linger_bytes: 16_777_216, linger_ms: 300 });
  });
  afterAll(async () => {
    await bytesBound.close();
    await timeBound.close();
  });
  const portOf = (gw: TestGateway): number => Number(new URL(gw.url).port);

  it('stops reading a chunked upload past linger_bytes and closes', async () => {
    // 32 KB every 20 ms for 4 s, and never the last chunk: only the byte bound can end it.
    const chunk = `${(32_768).toString(16)}\r\n${'x'.repeat(32_768)}\r\n`;
    const a = await rawRequest(
      portOf(bytesBound),
      head(bytesBound.key, 'Transfer-Encoding: chunked\r\n') + chunk,
      {
        timeoutMs: 3_000,
        untilClose: true,
        drip: { chunks: Array.from({ length: 200 }, () => chunk), everyMs: 20 },
      },
    );
    expect(a.status).toBe(413);
    expect(errorCode(a)).toBe('SY_ERR_BODY_TOO_LARGE');
    expect(a.closed).toBe(true);
  });

  it('closes at once when the declared length is over linger_bytes (nothing to wait for)', async () => {
    const a = await rawRequest(
      portOf(bytesBound),
      head(bytesBound.key, 'Content-Length: 1000000\r\n'),
      {
        timeoutMs: 3_000,
        untilClose: true,
      },
    );
    expect(a.status).toBe(413);
    expect(a.closed).toBe(true);
  });

  it('waits at most linger_ms for the rest of a declared upload, then closes', async () => {
    // The body is declared but never sent: only the time bound can end the wait.
    const a = await rawRequest(
      portOf(timeBound),
      head(timeBound.key, 'Content-Length: 1000000\r\n'),
      {
        timeoutMs: 3_000,
        untilClose: true,
      },
    );
    expect(a.status).toBe(413);
    expect(errorCode(a)).toBe('SY_ERR_BODY_TOO_LARGE');
    expect(a.closed).toBe(true);
  });

  it('reads a declared upload to its end, then closes cleanly: the client sees the 413 and no reset', async () => {
    const body = Buffer.alloc(2_000_000, 0x20);
    const a = await rawRequest(
      portOf(timeBound),
      Buffer.concat([Buffer.from(head(timeBound.key, `Content-Length: ${body.length}\r\n`)), body]),
      { timeoutMs: 3_000, untilClose: true },
    );
    expect(a.status).toBe(413);
    expect(a.headers['connection']).toBe('close');
    expect(a.closed).toBe(true);
    expect(a.error).toBeUndefined();
  });

  it('closes at once, without waiting for a body, when the client awaits 100 Continue', async () => {
    const a = await rawRequest(
      portOf(bytesBound),
      head(bytesBound.key, 'Content-Length: 60000\r\nExpect: 100-continue\r\n'),
      { timeoutMs: 3_000, untilClose: true },
    );
    // Refused on its declared length: no 100 Continue was sent, so no body is coming.
    expect(a.status).toBe(413);
    expect(a.closed).toBe(true);
  });
});
