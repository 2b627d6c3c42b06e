import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';

/**
 * The floor: about the least work a Node proxy can do per request (read the body, forward it on
 * an undici Pool, read the answer, write it back; an event stream is written back chunk by chunk
 * as it arrives). No auth, parsing, limits, deadlines or logs.
 * Whatever Switchyard costs beyond this is its own. Usage: floor-proxy.ts <upstream origin>.
 * Prints `READY <url>` on stdout once listening.
 */
const origin = process.argv[2];
if (origin === undefined) throw new Error('usage: floor-proxy.ts <upstream origin>');
// Same pool settings as Switchyard's defaults (src/config/defaults.ts).
const pool = new Pool(origin, { connections: 128, pipelining: 1, keepAliveTimeout: 30_000 });

const server = createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    pool
      .request({
        path: req.url ?? '/',
        method: req.method === 'GET' ? 'GET' : 'POST',
        headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
        body: chunks.length === 0 ? null : Buffer.concat(chunks),
      })
      .then(async ({ statusCode, headers, body }) => {
        const type = headers['content-type'];
        if (typeof type === 'string' && type.startsWith('text/event-stream')) {
          res.writeHead(statusCode, { 'content-type': type, 'cache-control': 'no-cache' });
          for await (const chunk of body) {
            if (!res.write(chunk as Buffer)) await new Promise((ok) => res.once('drain', ok));
          }
          res.end();
          return;
        }
        const answer = Buffer.from(await body.arrayBuffer());
        res.writeHead(statusCode, {
          'content-type': typeof type === 'string' ? type : 'application/json',
          'content-length': answer.length,
        });
        res.end(answer);
      })
      .catch((err: unknown) => {
        res.writeHead(502, { 'content-type': 'text/plain' }).end(String(err));
      });
  });
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`READY http://127.0.0.1:${port}\n`);
});
process.once('SIGTERM', () => process.exit(0));
