import { connect } from 'node:net';
import { adminKeys, gatesIdle } from '../../test/support/gate-state.js';
import { startProcessGateway } from '../../test/support/gateway-process.js';
import { rawConversation, rawPost } from '../../test/support/raw-http.js';
import { chatCompletion, delayed, json, startUpstream } from '../../test/support/upstream.js';
import type { FaultScenario } from './scenario.js';

/**
 * Issue #13, findings 1 and 9: connections that pipeline, half-close, hang up or reset while
 * their requests are served must never leak an admission slot or an in-flight count. 1,000 such
 * connections (seven kinds, in turn, 50 at a time) against a model with a concurrency limit of 8;
 * then the gates must show nothing in flight, a normal request must succeed, and SIGTERM must
 * not wait out the (long) drain.
 */
const LIMIT = 8;
const DRAIN_MS = 60_000;
const CHAT = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };

type Abuse = (port: number, post: () => string) => Promise<void>;

/** Opens a connection, writes `bytes`, and ends it after `ms` by `how`. */
function writeThen(port: number, bytes: string, ms: number, how: 'fin' | 'reset'): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    s.on('close', () => resolve());
    s.write(bytes);
    setTimeout(() => (how === 'fin' ? s.destroy() : s.resetAndDestroy()), ms);
  });
}

const ABUSES: readonly (readonly [string, Abuse])[] = [
  [
    'two pipelined chats, then a garbage line',
    async (port, post) => {
      await rawConversation(port, post() + post() + 'BLAH\r\n\r\n', { timeoutMs: 10_000 });
    },
  ],
  [
    'three pipelined chats, hang up after the first answer',
    async (port, post) => {
      await rawConversation(port, post() + post() + post(), { hangUpAfter: 1, timeoutMs: 10_000 });
    },
  ],
  [
    'two pipelined chats, then a half-close',
    async (port, post) => {
      await rawConversation(port, post() + post(), { halfClose: true, timeoutMs: 10_000 });
    },
  ],
  ['a chat, then hang up before the answer', (port, post) => writeThen(port, post(), 5, 'fin')],
  ['a chat, then a reset before the answer', (port, post) => writeThen(port, post(), 5, 'reset')],
  [
    'three pipelined chats, then a reset mid-answer',
    (port, post) => writeThen(port, post() + post() + post(), 15, 'reset'),
  ],
  ['half a request, then hang up', (port, post) => writeThen(port, post().slice(0, 90), 5, 'fin')],
];

export const scenario: FaultScenario = {
  id: 'abusive-connections',
  title: 'Abusive connections (pipelined, half-closed, hung up, reset) never leak a slot',
  async run(ctx) {
    const total = ctx.quick ? 140 : 1_000;
    const up = await startUpstream(delayed(20, json(200, chatCompletion())));
    const keys = adminKeys();
    const gw = await startProcessGateway({
      config: {
        server: { host: '127.0.0.1', port: 0, drain_ms: DRAIN_MS },
        tenants: keys.tenants,
        models: { chat: { backend: 'openai', url: `${up.url}/v1` } },
        admission: { concurrency: { algorithm: 'fixed', initial_limit: LIMIT } },
      },
    });
    const port = Number(new URL(gw.url).port);
    const post = (): string =>
      rawPost('/v1/chat/completions', CHAT, { authorization: `Bearer ${keys.user}` });
    try {
      let next = 0;
      const t0 = performance.now();
      const worker = async (): Promise<void> => {
        for (let i = next++; i < total; i = next++) await ABUSES[i % ABUSES.length]![1](port, post);
      };
      await Promise.all(Array.from({ length: 50 }, worker));
      ctx.log(
        `${total} abusive connections (${ABUSES.length} kinds) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
      const gates = await gatesIdle(gw.url, keys.admin, 30_000);
      const inFlight = Object.values(gates).reduce((n, g) => n + g.in_flight + g.queued, 0);
      ctx.log(`gates after: ${JSON.stringify(gates)}`);
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${keys.user}`, 'content-type': 'application/json' },
        body: JSON.stringify(CHAT),
      });
      await res.arrayBuffer();
      const t1 = performance.now();
      await gw.stop(DRAIN_MS + 5_000);
      const exit = await gw.exited();
      const stopS = (performance.now() - t1) / 1000;
      ctx.log(`SIGTERM: exit ${String(exit)} after ${stopS.toFixed(1)} s (drain_ms ${DRAIN_MS})`);
      return [
        {
          name: `requests in flight or queued after ${total} abusive connections`,
          target: '0',
          value: String(inFlight),
          pass: inFlight === 0,
          detail: { limit: LIMIT, inFlight },
        },
        {
          name: 'a normal chat request afterwards',
          target: '200',
          value: String(res.status),
          pass: res.status === 200,
        },
        {
          name: 'SIGTERM after the abuse: clean exit without waiting out the drain',
          target: `exit 0 in < 10 s (drain ${DRAIN_MS / 1000} s)`,
          value: `exit ${String(exit)} in ${stopS.toFixed(1)} s`,
          pass: exit === 0 && stopS < 10,
        },
      ];
    } finally {
      await gw.close();
      await up.close();
    }
  },
};
