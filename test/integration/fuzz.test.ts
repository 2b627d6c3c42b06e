import fc from 'fast-check';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_REGISTRY } from '../../src/core/errors.js';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { rawRequest } from '../support/raw-http.js';
import {
  chatCompletion,
  embeddingList,
  json,
  sse,
  startUpstream,
  type Behaviour,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * Issue 2: thousands of malformed requests at every route, and raw bytes at the HTTP parser.
 * Every answer is a JSON 4xx whose code is in the registry (a request that happens to be valid
 * may succeed), never a 5xx; the process survives and Object.prototype is untouched.
 */
const SEED = 20_261_123;
const BODY_LIMIT = 65_536;

/** An upstream that answers every API correctly, so any failure is the gateway's own. */
const routed: Behaviour = (req, res, call) => {
  const p = call.path;
  if (p.endsWith('/chat/completions')) {
    const stream = (JSON.parse(call.body || '{}') as { stream?: unknown }).stream === true;
    const answer = stream ? sse(['a', 'b'], { usage: { prompt: 2, completion: 2 } }) : null;
    return (answer ?? json(200, chatCompletion()))(req, res, call);
  }
  if (p.endsWith('/embeddings')) {
    return json(200, embeddingList())(req, res, call);
  }
  if (p.endsWith('/infer')) {
    return json(200, {
      model_name: 'tensor',
      outputs: [{ name: 'y', datatype: 'FP32', shape: [1], data: [1] }],
    })(req, res, call);
  }
  if (p.endsWith('/ready')) return json(200, {})(req, res, call);
  if (p.startsWith('/v2/models/')) {
    return json(200, {
      name: 'tensor',
      versions: ['1'],
      platform: 'onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }],
    })(req, res, call);
  }
  return json(404, { error: { message: 'no such path' } })(req, res, call);
};

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

/**
 * The invariant: never a 5xx; an error is JSON with a registry code whose status it has. HEAD
 * answers carry no body, so only their type is checked. Returns the code (or 'ok').
 */
function checkAnswer(a: Answer, method: string): string {
  expect(a.status).toBeGreaterThanOrEqual(200);
  expect(a.status).toBeLessThan(500);
  if (a.status < 400) return 'ok';
  expect(a.contentType).toMatch(/^application\/json/);
  if (method === 'HEAD') return 'head';
  const body = JSON.parse(a.body.toString('utf8')) as {
    error?: { code?: string; switchyard_code?: string } | string;
    code?: string;
  };
  // Anthropic-shaped answers (/v1/messages, #16) carry the code as error.switchyard_code.
  const code =
    typeof body.error === 'object' ? (body.error.code ?? body.error.switchyard_code) : body.code;
  expect(code).toBeDefined();
  expect(Object.keys(ERROR_REGISTRY)).toContain(code);
  expect(ERROR_REGISTRY[code as keyof typeof ERROR_REGISTRY].status).toBe(a.status);
  return code!;
}

function protoSnapshot(): string {
  return JSON.stringify(
    Object.getOwnPropertyNames(Object.prototype)
      .sort()
      .map((k) => [k, typeof Object.getOwnPropertyDescriptor(Object.prototype, k)?.value]),
  );
}

// ---- generators ----

const CHAT = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };

const nastyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constantFrom(
    '',
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    '\u0000',
    '\ud800',
    '\u202e',
  ),
);

/** JSON text that is broken, hostile or of the wrong shape. */
const badJsonText: fc.Arbitrary<string> = fc.oneof(
  // Not JSON at all, or cut short.
  fc.string({ unit: 'binary', maxLength: 120 }),
  fc.tuple(fc.jsonValue({ maxDepth: 3 }), fc.nat()).map(([v, n]) => {
    const t = JSON.stringify({ ...CHAT, extra: v });
    return t.slice(0, n % t.length);
  }),
  fc.constantFrom(
    '{',
    '{"model":',
    '[1,]',
    '{"a":1}}',
    'nul',
    '{"model":"chat"',
    "{'a':1}",
    '{"a":01}',
  ),
  // Deep nesting, bare and inside an otherwise valid request.
  fc.integer({ min: 129, max: 30_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
  fc
    .integer({ min: 129, max: 20_000 })
    .map(
      (n) =>
        `{"model":"chat","messages":[{"role":"user","content":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}]}`,
    ),
  // Numbers JSON.parse turns into Infinity.
  fc
    .tuple(
      fc.constantFrom('1e999', '-1e400', '9'.repeat(400)),
      fc.constantFrom('temperature', 'max_tokens', 'n'),
    )
    .map(
      ([num, field]) =>
        `{"model":"chat","messages":[{"role":"user","content":"x"}],"${field}":${num}}`,
    ),
  fc
    .constantFrom('1e999', '-1e400')
    .map((num) => `{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[${num}]}]}`),
  // Prototype pollution, plain and escaped, at the top and nested.
  fc.constantFrom(
    '{"__proto__":{"polluted":"yes"},"model":"chat","messages":[{"role":"user","content":"x"}]}',
    '{"model":"chat","messages":[{"role":"user","content":"x","__proto__":{"polluted":"yes"}}]}',
    '{"constructor":{"prototype":{"polluted":"yes"}},"model":"chat"}',
    '{"\\u005f_proto__":{"polluted":"yes"}}',
    '{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1],"parameters":{"__proto__":{"polluted":"yes"}}}]}',
    '{"model":"embed","input":"x","constructor":{"prototype":{"polluted":"yes"}}}',
  ),
  // Well-formed JSON with fields of the wrong type or value.
  fc
    .record(
      {
        model: fc.oneof(
          nastyString,
          fc.constantFrom('chat', 'embed', 'tensor'),
          fc.jsonValue({ maxDepth: 1 }),
        ),
        messages: fc.oneof(
          fc.jsonValue({ maxDepth: 2 }),
          fc.array(
            fc.record({
              role: fc.jsonValue({ maxDepth: 1 }),
              content: fc.jsonValue({ maxDepth: 1 }),
            }),
            {
              maxLength: 3,
            },
          ),
        ),
        stream: fc.jsonValue({ maxDepth: 1 }),
        stream_options: fc.jsonValue({ maxDepth: 1 }),
        input: fc.jsonValue({ maxDepth: 2 }),
        inputs: fc.oneof(
          fc.jsonValue({ maxDepth: 3 }),
          fc.array(
            fc.record({
              name: fc.jsonValue({ maxDepth: 0 }),
              datatype: fc.oneof(fc.constantFrom('FP32', 'INT64', 'BYTES', 'fp32'), nastyString),
              shape: fc.jsonValue({ maxDepth: 1 }),
              data: fc.jsonValue({ maxDepth: 2 }),
            }),
            { maxLength: 2 },
          ),
        ),
      },
      { requiredKeys: [] },
    )
    .map((o) => JSON.stringify(o)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
);

/**
 * A request body as latin-1 text (so a counterexample prints readably), or the length of a body
 * over the limit (built only when sent), or none.
 */
const body: fc.Arbitrary<string | number | undefined> = fc.oneof(
  { weight: 6, arbitrary: badJsonText.map(latin1) },
  { weight: 1, arbitrary: fc.constant(undefined) },
  // Raw bytes: invalid UTF-8, a BOM, NULs.
  {
    weight: 1,
    arbitrary: fc.uint8Array({ maxLength: 256 }).map((u) => Buffer.from(u).toString('latin1')),
  },
  { weight: 1, arbitrary: badJsonText.map((t) => latin1(`\ufeff${t}`)) },
  { weight: 1, arbitrary: fc.integer({ min: BODY_LIMIT + 1, max: 3 * BODY_LIMIT }) },
);

function latin1(utf8: string): string {
  return Buffer.from(utf8, 'utf8').toString('latin1');
}

function bodyBytes(b: string | number | undefined): Buffer | null {
  if (b === undefined) return null;
  return typeof b === 'number' ? Buffer.alloc(b, 0x20) : Buffer.from(b, 'latin1');
}

/** A header value undici will send (visible latin-1, no CR/LF/NUL). */
const headerValue = fc.string({
  unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)),
  maxLength: 60,
});

/** Headers: mostly plausible (a valid key, JSON), often hostile; each one may be missing. */
function headersArb(key: string): fc.Arbitrary<Record<string, string>> {
  const some = <T>(arb: fc.Arbitrary<T>, missingOneIn: number): fc.Arbitrary<T | undefined> =>
    fc.option(arb, { freq: missingOneIn, nil: undefined });
  return fc
    .record({
      'content-type': some(
        fc.oneof(
          {
            weight: 4,
            arbitrary: fc.constantFrom('application/json', 'application/json; charset=utf-8'),
          },
          {
            weight: 1,
            arbitrary: fc.constantFrom(
              'application/vnd.api+json',
              'text/plain',
              'application/x-www-form-urlencoded',
              'multipart/form-data; boundary=x',
              'application/jsonx',
              'json',
            ),
          },
          { weight: 1, arbitrary: headerValue },
        ),
        5,
      ),
      authorization: some(
        fc.oneof(
          { weight: 6, arbitrary: fc.constantFrom(`Bearer ${key}`, `bearer   ${key}  `) },
          {
            weight: 1,
            arbitrary: fc.constantFrom(
              `Bearer ${key.slice(0, -1)}${key.endsWith('a') ? 'b' : 'a'}`,
              'Bearer',
              'Bearer ',
              'Basic dXNlcjpwYXNz',
              'Bearer sy_sk_x',
              `Bearer ${key} extra`,
            ),
          },
          { weight: 1, arbitrary: headerValue },
        ),
        6,
      ),
      'x-api-key': some(fc.oneof(fc.constant(key), headerValue), 2),
      'x-switchyard-timeout-ms': some(
        fc.constantFrom('abc', '-1', '1e3', '1.5', '', ' 5000', '99999999999', '5000', '0x10'),
        2,
      ),
      'x-request-id': some(headerValue, 2),
      'content-encoding': some(fc.constantFrom('gzip', 'br', 'identity', 'deflate, gzip', 'x'), 1),
      'inference-header-content-length': some(fc.constantFrom('0', '12', 'x'), 1),
      accept: some(headerValue, 2),
    })
    .map(
      (h) =>
        Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)) as Record<
          string,
          string
        >,
    );
}

describe('fuzzing every route and the HTTP parser', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  let pool: Pool;
  let port: number;
  let patterns: string[];
  let routes: { method: string; pattern: string }[];
  let protoBefore: string;

  beforeAll(async () => {
    protoBefore = protoSnapshot();
    up = await startUpstream(routed);
    gw = await startTestGateway({
      config: {
        server: {
          host: '127.0.0.1',
          port: 0,
          limits: {
            body_bytes: BODY_LIMIT,
            headers_timeout_ms: 1_000,
            request_timeout_ms: 2_000,
            timeout_check_interval_ms: 100,
          },
        },
        models: {
          chat: openaiModel(up.url),
          embed: openaiModel(up.url, { operations: ['embeddings'] }),
          tensor: { backend: 'kserve', url: up.url },
        },
      },
    });
    port = Number(new URL(gw.url).port);
    pool = new Pool(gw.url, { connections: 4 });
    routes = [...gw.gateway.routes()];
    patterns = [...new Set(routes.map((r) => r.pattern))];
  });
  afterAll(async () => {
    await pool.close();
    await gw.close();
    await up.close();
  });

  it('knows the routes it fuzzes, the issue-2 ones included', () => {
    for (const p of [
      '/v1/chat/completions',
      '/v1/embeddings',
      '/v1/models',
      '/v2/models/:name/infer',
      '/healthz',
      '/readyz',
      '/metrics',
    ]) {
      expect(patterns).toContain(p);
    }
  });

  it('answers thousands of malformed requests on every route with a JSON 4xx, never a 5xx', async () => {
    const segment = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom('chat', 'embed', 'tensor') },
      fc.constantFrom(
        'chat',
        'embed',
        'tensor',
        '1',
        '..',
        '%00',
        '%ZZ',
        '%2F',
        '__proto__',
        'constructor',
        'hasOwnProperty',
        '%E2%82%AC',
        'a'.repeat(300),
      ),
      fc.string({ maxLength: 12 }).map(encodeURIComponent),
    );
    const fill = (pattern: string, seg: string): string => pattern.replace(/:\w+/g, seg);
    const tail = fc.constantFrom(
      '/',
      '//',
      '/x',
      '?a=1&__proto__[x]=1',
      '/..',
      '#f',
      '%20',
      '.json',
    );
    const otherMethod = fc.constantFrom(
      'GET',
      'POST',
      'PUT',
      'DELETE',
      'PATCH',
      'OPTIONS',
      'HEAD',
      'TRACE',
      'PURGE',
      'PROPFIND',
      'FOO',
    );
    // Mostly a real route with its own method (so the body and headers are what is tested),
    // sometimes a mangled path or another method.
    const target = fc.oneof(
      {
        weight: 6,
        arbitrary: fc
          .tuple(fc.constantFrom(...routes), segment)
          .map(([r, seg]) => [r.method, fill(r.pattern, seg)] as const),
      },
      {
        weight: 1,
        arbitrary: fc
          .tuple(otherMethod, fc.constantFrom(...routes), segment, tail)
          .map(([m, r, seg, t]) => [m, fill(r.pattern, seg) + t] as const),
      },
      {
        weight: 1,
        arbitrary: fc
          .tuple(otherMethod, fc.webPath())
          .map(([m, p]) => [m, p.startsWith('/') ? p : `/${p}`] as const),
      },
      {
        weight: 1,
        arbitrary: fc
          .tuple(otherMethod, fc.constantFrom(...routes))
          .map(([m, r]) => [m, r.pattern.toUpperCase().replace(/:\w+/gi, 'x')] as const),
      },
    );
    const codes = new Map<string, number>();
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(target, headersArb(gw.key), body, async ([m, p], headers, b) => {
        let res;
        try {
          res = await pool.request({
            method: m,
            path: p,
            headers,
            body: m === 'GET' || m === 'HEAD' ? null : bodyBytes(b),
            // A hang is a failure with a counterexample, not a stuck pool.
            headersTimeout: 10_000,
            bodyTimeout: 10_000,
          });
        } catch (err) {
          // undici refused to send it (a client-side check): not a request the server saw.
          const code = (err as { code?: string }).code;
          if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') {
            // undici 7.30 leaves its pool stuck after refusing a content-type: start afresh.
            void pool.destroy();
            pool = new Pool(gw.url, { connections: 4 });
            fc.pre(false);
          }
          throw err;
        }
        const raw = Buffer.from(await res.body.arrayBuffer());
        const code = checkAnswer(
          {
            status: res.statusCode,
            contentType: String(res.headers['content-type'] ?? ''),
            body: raw,
          },
          m,
        );
        sent++;
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }),
      { seed: SEED, numRuns: Number(process.env['FUZZ_RUNS'] ?? 3_000), endOnFailure: true },
    );
    expect(sent).toBeGreaterThan(2_500);
    // Valid GETs (models, health, metrics) succeed; still, most answers are errors of many kinds.
    const errors = [...codes]
      .filter(([c]) => c.startsWith('SY_ERR_'))
      .reduce((n, [, k]) => n + k, 0);
    expect(errors, JSON.stringify([...codes])).toBeGreaterThan(sent * 0.5);
    for (const c of [
      'SY_ERR_INVALID_JSON',
      'SY_ERR_INVALID_REQUEST',
      'SY_ERR_AUTH_INVALID',
      'SY_ERR_ROUTE_NOT_FOUND',
      'SY_ERR_METHOD_NOT_ALLOWED',
      'SY_ERR_UNSUPPORTED_MEDIA_TYPE',
      'SY_ERR_BODY_TOO_LARGE',
      'SY_ERR_MODEL_NOT_FOUND',
    ]) {
      expect(codes.get(c) ?? 0, `${c} in ${JSON.stringify([...codes])}`).toBeGreaterThan(0);
    }
  }, 120_000);

  it('refuses broken, hostile and overflowing JSON on every JSON route with a 400', async () => {
    const jsonRoutes = [
      '/v1/chat/completions',
      '/v1/embeddings',
      '/v2/models/tensor/infer',
      '/v2/models/tensor/versions/1/infer',
    ];
    const hostile = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 80 }).filter((t) => {
        try {
          JSON.parse(t);
          return false;
        } catch {
          return true;
        }
      }),
      fc.integer({ min: 129, max: 30_000 }).map((n) => `{"a":${'['.repeat(n)}${']'.repeat(n)}}`),
      fc
        .constantFrom('1e999', '-1e400', '9'.repeat(400))
        .map((n) => `{"model":"chat","messages":[],"x":${n}}`),
      fc.constantFrom(
        '{"__proto__":{"polluted":"yes"}}',
        '{"a":[{"b":{"__proto__":{"polluted":"yes"}}}]}',
        '{"constructor":{"prototype":{"polluted":"yes"}}}',
        '{"\\u005f\\u005fproto\\u005f\\u005f":{"polluted":"yes"}}',
      ),
      fc.constantFrom('[]', '1', '"s"', 'null', 'true', ''),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...jsonRoutes), hostile, async (p, text) => {
        const res = await pool.request({
          method: 'POST',
          path: p,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.key}` },
          body: text,
        });
        const raw = Buffer.from(await res.body.arrayBuffer());
        const code = checkAnswer(
          { status: res.statusCode, contentType: String(res.headers['content-type']), body: raw },
          'POST',
        );
        expect(res.statusCode).toBe(400);
        expect(code).toBe('SY_ERR_INVALID_JSON');
      }),
      { seed: SEED, numRuns: 1_000, endOnFailure: true },
    );
  }, 60_000);

  it('answers raw-socket garbage and broken HTTP syntax with a JSON 4xx, or a 2xx when it parses', async () => {
    const requestLine = fc.oneof(
      fc.constantFrom(
        'GET /healthz HTTP/1.1',
        'POST /v1/chat/completions HTTP/1.1',
        'GET /healthz HTTP/9.9',
        'GET /healthz',
        'GET  /healthz HTTP/1.1',
        'GET /heal\x01thz HTTP/1.1',
        'GET /v2/models/\xc3\xa9/ready HTTP/1.1',
        'FOO /healthz HTTP/1.1',
        'CONNECT example.com:443 HTTP/1.1',
        'PRI * HTTP/2.0',
        'OPTIONS * HTTP/1.1',
        'GET http://x/healthz HTTP/1.1',
        'GET',
        '',
      ),
      fc.string({ unit: 'binary-ascii', maxLength: 40 }),
    );
    const header = fc.oneof(
      fc.constantFrom(
        'Host: x',
        'Host : x',
        'Host x',
        'X-A: a\x00b',
        'X-A: a\r\n folded',
        'Content-Length: 5',
        'Content-Length: -1',
        'Content-Length: 1e3',
        'Content-Length: 99999999999999999999',
        'Content-Length: 1\r\nContent-Length: 2',
        'Transfer-Encoding: chunked',
        'Transfer-Encoding: gzip',
        'Transfer-Encoding: chunked\r\nContent-Length: 3',
        'Expect: 100-continue',
        'Expect: nonsense',
        'Upgrade: websocket\r\nConnection: Upgrade',
        `Authorization: Bearer ${gw.key}`,
        'Content-Type: application/json',
        'Connection: close',
      ),
      fc.string({ unit: 'binary-ascii', maxLength: 30 }),
      fc.integer({ min: 17_000, max: 40_000 }).map((n) => `X-Bomb: ${'a'.repeat(n)}`),
      fc
        .integer({ min: 500, max: 3_000 })
        .map((n) => Array.from({ length: n }, (_, i) => `h${i}: v`).join('\r\n')),
    );
    const rawBody = fc.oneof(
      fc.constantFrom(
        '',
        '{}',
        'hello',
        '5\r\nhello\r\n0\r\n\r\n',
        'zz\r\nabc\r\n0\r\n\r\n',
        'ffffffffffffffffffff\r\nabc\r\n',
        '2\r\n{}XX0\r\n\r\n',
        '2;\x01\r\n{}\r\n0\r\n\r\n',
      ),
      fc.string({ unit: 'binary-ascii', maxLength: 60 }),
    );
    const eol = fc.constantFrom('\r\n', '\n', '\r');
    const message = fc
      .tuple(requestLine, fc.array(header, { maxLength: 5 }), rawBody, eol, fc.boolean())
      .map(([line, hs, b, nl, close]) => {
        const head = [line, ...hs, ...(close ? ['Connection: close'] : [])].join(nl);
        return Buffer.from(`${head}${nl}${nl}${b}`, 'latin1');
      });
    const garbage = fc.uint8Array({ minLength: 1, maxLength: 200 }).map((u) => Buffer.from(u));
    const answers = new Map<string, number>();
    // Concurrent batches: a request the parser is still waiting on ends in a 408 after the
    // (shortened) headers or request timeout, so a case can take up to ~2 s.
    const samples = fc.sample(
      fc.oneof({ weight: 4, arbitrary: message }, { weight: 1, arbitrary: garbage }),
      {
        seed: SEED,
        numRuns: 1_200,
      },
    );
    for (let i = 0; i < samples.length; i += 100) {
      const batch = samples.slice(i, i + 100);
      const results = await Promise.all(
        batch.map((bytes) => rawRequest(port, bytes, { timeoutMs: 6_000 })),
      );
      results.forEach((a, j) => {
        const bytes = batch[j]!;
        const what = JSON.stringify(bytes.toString('latin1').slice(0, 200));
        // Every message gets an answer (408 at the latest), and the answer keeps the invariant.
        expect(a.status, `no answer to ${what}: ${a.error ?? ''}`).toBeDefined();
        const method = bytes.toString('latin1').startsWith('HEAD') ? 'HEAD' : 'GET';
        const code = checkAnswer(
          { status: a.status!, contentType: a.headers['content-type'] ?? '', body: a.body },
          method,
        );
        answers.set(code, (answers.get(code) ?? 0) + 1);
      });
    }
    for (const c of [
      'SY_ERR_MALFORMED_HTTP',
      'SY_ERR_HEADERS_TOO_LARGE',
      'SY_ERR_REQUEST_TIMEOUT',
    ]) {
      expect(answers.get(c) ?? 0).toBeGreaterThan(0);
    }
  }, 120_000);

  it('is still serving afterwards, and Object.prototype is untouched', async () => {
    const res = await pool.request({
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.key}` },
      body: JSON.stringify(CHAT),
    });
    expect(res.statusCode).toBe(200);
    expect(((await res.body.json()) as { object: string }).object).toBe('chat.completion');
    expect(protoSnapshot()).toBe(protoBefore);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    // No request ended as an internal error.
    expect(gw.logs.filter((l) => l['code'] === 'SY_ERR_INTERNAL')).toEqual([]);
  });
});
