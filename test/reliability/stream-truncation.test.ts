import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { eventData } from '../../src/backends/http/sse.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { sse, sseChunk, sseCut, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * #13 finding 4: an upstream that sent three chunks and then ended its body cleanly, with no
 * finish_reason and no `data: [DONE]`, was relayed as a clean 200 stream: the client could not
 * tell a cut answer from a whole one, and the breaker never learned. The gateway runs as a
 * child process; the upstream is a local server in this process.
 */

const THREE = ['one', 'two', 'three'];

interface StreamAnswer {
  readonly status: number;
  /** The `data:` payloads, in order. */
  readonly events: string[];
}

async function stream(gw: ProcessGateway, requestId = 'any'): Promise<StreamAnswer> {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${gw.key}`,
      'content-type': 'application/json',
      'x-request-id': requestId,
    },
    body: JSON.stringify({
      model: 'primary',
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, events: eventData(Buffer.from(text)) };
}

function contents(events: readonly string[]): string[] {
  return events
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as { choices?: { delta: { content?: string } }[] })
    .filter((c) => c.choices !== undefined)
    .map((c) => c.choices![0]?.delta.content ?? '');
}

async function metric(gw: ProcessGateway, line: RegExp): Promise<number> {
  const text = await (await request(`${gw.url}/metrics`)).body.text();
  const hit = text.split('\n').find((l) => line.test(l));
  return hit === undefined ? 0 : Number(hit.split(' ').at(-1));
}

describe('a stream the upstream ends without a finish reason or [DONE] (#13 finding 4)', () => {
  let up: TestUpstream;
  let gw: ProcessGateway;
  beforeAll(async () => {
    up = await startUpstream();
    gw = await startProcessGateway({
      config: {
        log: { level: 'info' },
        models: {
          primary: {
            backend: 'openai',
            url: `${up.url}/v1`,
            breaker: { consecutive_failures: 3, cooldown_ms: 60_000 },
          },
        },
      },
    });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });
  beforeEach(() => {
    up.calls.length = 0;
  });

  it('relays what came, then ends the client stream with an SSE error event', async () => {
    up.behave(sseCut(THREE));
    const a = await stream(gw);
    expect(a.status).toBe(200);
    expect(contents(a.events.slice(0, -1))).toEqual(['one', 'two', 'three']);
    const last = JSON.parse(a.events.at(-1)!) as { error?: { code?: string } };
    expect(last.error?.code).toBe('SY_ERR_UPSTREAM_STREAM_INTERRUPTED');
    expect(a.events).not.toContain('[DONE]');
  });

  it('passes a whole stream as a clean one: ended by [DONE], or by a finish_reason on every choice', async () => {
    up.behave(sse(['a', 'b']));
    const done = await stream(gw);
    expect(done.events.at(-1)).toBe('[DONE]');
    up.behave(sseCut(THREE, [sseChunk('', 'stop')]));
    const finished = await stream(gw);
    expect(contents(finished.events)).toEqual(['one', 'two', 'three', '']);
    expect(finished.events.join('\n')).not.toContain('"error"');
  });

  it('records the cut attempt as failed and opens the breaker on a run of cut streams', async () => {
    const interrupted =
      /^switchyard_upstream_duration_seconds_count\{backend="primary",outcome="SY_ERR_UPSTREAM_STREAM_INTERRUPTED"\}/;
    const before = await metric(gw, interrupted);
    up.behave(sseCut(THREE));
    // Whole streams came last (or none at all): three cut ones are a run of three failures.
    const ids = ['cut-1', 'cut-2', 'cut-3'];
    for (const id of ids) expect((await stream(gw, id)).status).toBe(200);
    expect(up.calls).toHaveLength(3);
    const refused = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'primary',
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    });
    expect(refused.statusCode).toBe(503);
    expect(await refused.body.text()).toContain('SY_ERR_CIRCUIT_OPEN');
    expect(up.calls).toHaveLength(3);
    // Each cut attempt is recorded as failed: in the metrics and in the request log's route.
    expect(await metric(gw, interrupted)).toBe(before + 3);
    const logged = (id: string): boolean =>
      new RegExp(`"req_id":"${id}".*"path":"primary#1:UPSTREAM_STREAM_INTERRUPTED"`).test(
        gw.output(),
      );
    await expect.poll(() => ids.filter(logged)).toEqual(ids);
  });
});
