import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  startProcess,
  startProcessGateway,
  type ProcessGateway,
  type TestProcess,
} from '../support/gateway-process.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * Issue #13, "what held, and must keep holding": an upstream process killed with SIGKILL under
 * load, with a fallback configured, costs the clients nothing. The primary upstream is a real
 * child process speaking the OpenAI protocol; the gateway is the built bin in another.
 */
const UPSTREAM = `
import { createServer } from 'node:http';
const body = JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'from-primary' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } });
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => setTimeout(() => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }, 5));
});
server.listen(0, '127.0.0.1', () => console.log('upstream on http://127.0.0.1:' + server.address().port));
`;

describe('an upstream process killed under load, with a fallback (#13)', () => {
  let primary: TestProcess;
  let backup: TestUpstream;
  let gw: ProcessGateway;

  beforeAll(async () => {
    primary = await startProcess({
      nodeArgs: ['--input-type=module', '-e', UPSTREAM],
      ready: /upstream on (http:\/\/\S+)/,
    });
    backup = await startUpstream(json(200, chatCompletion('from-backup')));
    gw = await startProcessGateway({
      config: {
        models: {
          chat: { backend: 'openai', url: `${primary.url}/v1`, fallback: ['chat-backup'] },
          'chat-backup': { backend: 'openai', url: `${backup.url}/v1` },
        },
      },
    });
  }, 30_000);

  afterAll(async () => {
    await gw?.close();
    await primary?.stop();
    await backup?.close();
  });

  it('answers every client while the primary dies mid-run, from the fallback after it', async () => {
    const statuses: number[] = [];
    const answeredBy = { primary: 0, backup: 0 };
    let killed = false;
    const until = performance.now() + 3_000;
    const client = async (): Promise<void> => {
      while (performance.now() < until) {
        const res = await request(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] }),
        });
        const text = await res.body.text();
        statuses.push(res.statusCode);
        if (text.includes('from-primary')) answeredBy.primary++;
        if (text.includes('from-backup')) answeredBy.backup++;
      }
    };
    const killer = (async () => {
      await new Promise((r) => setTimeout(r, 1_000));
      primary.signal('SIGKILL');
      killed = true;
    })();
    await Promise.all([...Array.from({ length: 16 }, client), killer]);
    expect(killed).toBe(true);
    expect(statuses.length).toBeGreaterThan(200);
    // Before the kill the primary answered; after it, the fallback did; no client saw an error.
    expect(answeredBy.primary).toBeGreaterThan(0);
    expect(answeredBy.backup).toBeGreaterThan(0);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  });
});
