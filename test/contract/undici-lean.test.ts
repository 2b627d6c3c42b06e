import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import * as undici from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool, request } from '../../src/core/undici.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('undici loaded from its own modules', () => {
  let server: Server;
  let origin: string;

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ method: req.method, path: req.url, body }));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.close();
    await once(server, 'close');
  });

  it("is undici's own Pool class (an upgrade that moves the files fails here)", () => {
    expect(Pool).toBe(undici.Pool);
  });

  it('sends a request through a pool and reads the answer', async () => {
    const pool = new Pool(origin, { connections: 1 });
    try {
      const res = await request(pool, { path: '/x?y=1', method: 'POST', body: 'hello' });
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual({ method: 'POST', path: '/x?y=1', body: 'hello' });
    } finally {
      await pool.close();
    }
  });

  it("does not load undici's index (fetch, WebSocket, cache) in the gateway process", () => {
    // A fresh process: this test file itself imported the index above.
    const script = [
      "const { createRequire } = require('node:module');",
      `import(${JSON.stringify(`${ROOT}dist/main.js`)}).then(() => {`,
      "  const loaded = Object.keys(require.cache).filter((f) => f.includes('/node_modules/undici/'));",
      '  process.stdout.write(JSON.stringify(loaded));',
      '});',
    ].join('\n');
    const loaded = JSON.parse(
      execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }),
    ) as string[];
    expect(loaded.some((f) => f.endsWith('/undici/lib/dispatcher/pool.js'))).toBe(true);
    expect(loaded.filter((f) => f.endsWith('/node_modules/undici/index.js'))).toEqual([]);
    expect(loaded.filter((f) => f.includes('/lib/web/'))).toEqual([]);
  });
});
