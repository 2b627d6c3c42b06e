import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../core/clock.js';
import { syError } from '../core/errors.js';
import { parseConfig } from '../config/load.js';
import { RequestContext } from './context.js';
import { sendError } from './respond.js';
import type { Runtime } from './runtime.js';

/** Only the config snapshot: what a RequestContext and the error writer read. */
const runtime = { snapshot: parseConfig('{}', 'test', '.') } as unknown as Runtime;

type Handler = (ctx: RequestContext, res: ServerResponse) => void;

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

/** A real HTTP server whose requests each get a RequestContext; reports each end by URL. */
async function serve(handler: Handler, ended: string[]): Promise<number> {
  server = createServer((req, res) => {
    const ctx = new RequestContext(req, res, 'test', 'openai', {}, runtime, systemClock);
    ctx.onEnd(() => ended.push(req.url ?? ''));
    handler(ctx, res);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

async function until(cond: () => boolean): Promise<void> {
  const t = Date.now() + 5_000;
  while (!cond() && Date.now() < t) await new Promise((r) => setTimeout(r, 10));
}

describe('RequestContext.onEnd', () => {
  it('fires once for a request queued behind a pipelined one when the connection dies', async () => {
    const ended: string[] = [];
    const held: ServerResponse[] = [];
    // Nothing is answered: the second response waits behind the first, on a socket that dies.
    const port = await serve((_ctx, res) => void held.push(res), ended);
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => held.length === 2);
    socket.destroy();
    await until(() => ended.length === 2);
    expect(ended.sort()).toEqual(['/1', '/2']);
    // Answering later changes nothing: each life ended once.
    for (const res of held) res.end();
    await new Promise((r) => setTimeout(r, 50));
    expect(ended).toHaveLength(2);
  });

  it('runs a callback registered after the end at once', async () => {
    const ended: string[] = [];
    let late = 0;
    const port = await serve((ctx, res) => {
      res.end('ok');
      res.once('close', () => ctx.onEnd(() => late++));
    }, ended);
    await fetch(`http://127.0.0.1:${port}/x`).then((r) => r.text());
    await until(() => late === 1);
    expect(ended).toEqual(['/x']);
    expect(late).toBe(1);
  });

  it('aborts a deadline started after the client has gone', async () => {
    const ended: string[] = [];
    let seen = false;
    let signal: AbortSignal | undefined;
    const port = await serve((ctx) => {
      seen = true;
      // As a handler still at work when its client leaves would: the deadline comes after.
      ctx.onEnd(() => {
        signal = ctx.startDeadline().signal;
      });
    }, ended);
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write('GET /gone HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => seen);
    socket.resetAndDestroy();
    await until(() => signal !== undefined);
    expect(signal?.aborted).toBe(true);
    expect((signal?.reason as { code?: string }).code).toBe('SY_ERR_CLIENT_CLOSED');
  });
});

describe('sendError', () => {
  it('cuts the connection of a response already begun, and the request ends', async () => {
    const ended: string[] = [];
    const port = await serve((ctx, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      // The handler fails later, with part of its answer out.
      setTimeout(() => sendError(ctx, syError('SY_ERR_UPSTREAM_ERROR', 'after the headers')), 50);
    }, ended);
    const got = await new Promise<{ text: string; closed: boolean }>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve({ text, closed: true }));
      setTimeout(() => {
        resolve({ text, closed: false });
        socket.destroy();
      }, 3_000);
      socket.write('GET /begun HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    expect(got.closed).toBe(true);
    expect(got.text).toContain('partial');
    // Cut, not ended cleanly: no last chunk, so the client knows the answer is incomplete.
    expect(got.text).not.toContain('\r\n0\r\n\r\n');
    await until(() => ended.length === 1);
    expect(ended).toEqual(['/begun']);
  });
});
