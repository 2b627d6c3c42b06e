import fc from 'fast-check';
import { ERROR_REGISTRY } from '../../../src/core/errors.js';
import { rawConversation, type RawResponse } from '../../support/raw-http.js';

/**
 * A corpus of malformed and hostile HTTP requests, by kind, for the real-process malformed-input
 * test (test/reliability/malformed-corpus.test.ts) and the `malformed` bench:faults scenario
 * (issue #13). Every kind is a fast-check arbitrary, sampled with a fixed seed, so a run is
 * reproducible and a failing case prints as the bytes it sent.
 *
 * The gateway it targets has a chat model `chat`, an embeddings model `embed` and a KServe model
 * `tensor`, `server.limits.body_bytes` of 65,536, and short header/request timeouts (about 1 s
 * and 2 s), so the slow kinds end in a 408 quickly.
 */
export interface MalformedCase {
  /** `group/name`, such as `chunked/bad-size`. */
  readonly kind: string;
  /** Written at once. */
  readonly bytes: Buffer;
  /** Written afterwards, one piece every `everyMs`: a slow or partial sender. */
  readonly drip?: { readonly chunks: readonly Buffer[]; readonly everyMs: number };
  /**
   * Answers the client waits for. The first `ok` of them answer valid requests sent before the
   * malformed part (pipelining) and may be 2xx; every other one must be a JSON 4xx.
   */
  readonly answers: number;
  readonly ok: number;
  /** The client hangs up this long after writing, answered or not (answers are then optional). */
  readonly hangUpAfterMs?: number;
  /** Half-close after writing. */
  readonly halfClose?: boolean;
}

/** The body limit the corpus assumes (413 kinds send more than this). */
export const CORPUS_BODY_LIMIT = 65_536;

/**
 * The gateway config the corpus assumes, over `startProcessGateway`'s base: the three models on
 * `upstreamUrl` (answered by `chatAndEmbeddings`), the body limit, and short timeouts.
 */
export function corpusGatewayConfig(
  upstreamUrl: string,
  tenants: Record<string, unknown>,
): Record<string, unknown> {
  return {
    server: {
      host: '127.0.0.1',
      port: 0,
      limits: {
        body_bytes: CORPUS_BODY_LIMIT,
        headers_timeout_ms: 1_000,
        request_timeout_ms: 2_000,
        timeout_check_interval_ms: 100,
      },
    },
    tenants,
    models: {
      chat: { backend: 'openai', url: `${upstreamUrl}/v1` },
      embed: { backend: 'openai', url: `${upstreamUrl}/v1`, operations: ['embeddings'] },
      tensor: { backend: 'kserve', url: upstreamUrl },
    },
  };
}

type Spec = Omit<MalformedCase, 'kind'>;

const CRLF = '\r\n';

/** One answer, an error, from bytes sent at once. */
function one(bytes: string | Buffer): Spec {
  return {
    bytes: typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes,
    answers: 1,
    ok: 0,
  };
}

/** A request as text: request line, headers, body (a Content-Length is added when asked). */
function http(
  line: string,
  headers: readonly string[],
  body = '',
  opts: { length?: boolean } = {},
): string {
  const all = [...headers];
  if (opts.length === true) all.push(`Content-Length: ${Buffer.byteLength(body, 'latin1')}`);
  return `${line}${CRLF}${all.map((h) => h + CRLF).join('')}${CRLF}${body}`;
}

const CHAT = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };

/** Text that JSON.parse refuses, or accepts into something our parser refuses. */
const brokenJson = fc.constantFrom(
  '{',
  '{"model":',
  '{"model":"chat",}',
  "{'model':'chat'}",
  '{"model":"chat" "messages":[]}',
  '[1,]',
  '{"a":01}',
  '{"a":NaN}',
  '{"a":Infinity}',
  '{"a":undefined}',
  '{"a":"\\x41"}',
  '{"a":"unterminated}',
  '{"a":1}}',
  'nul',
  '{"a":tru}',
);

/** Each field of a chat request with a value of the wrong type or out of its range. */
const wrongChatField = fc.oneof(
  fc.constantFrom<[string, unknown]>(
    ['model', 42],
    ['model', null],
    ['model', ['chat']],
    ['messages', 'hi'],
    ['messages', {}],
    ['messages', null],
    ['stream', 'yes'],
    ['stream', 1],
    ['stream_options', 'usage'],
    ['stream_options', [1]],
    ['max_tokens', -1],
    ['max_tokens', 0],
    ['max_tokens', 1.5],
    ['max_tokens', '10'],
    ['max_completion_tokens', -3],
    ['n', 0],
    ['n', 129],
    ['n', 'two'],
    ['top_logprobs', 21],
    ['seed', 0.5],
    ['logprobs', 'true'],
    ['stop', 5],
    ['stop', ['a', 'b', 'c', 'd', 'e']],
    ['stop', []],
    ['logit_bias', { '1': 101 }],
    ['logit_bias', { word: 1 }],
    ['user', 7],
    ['response_format', 'json'],
    ['response_format', { type: 'xml' }],
    ['tools', 'search'],
    ['tools', [1]],
    ['tool_choice', 'always'],
    ['parallel_tool_calls', 'yes'],
  ),
  fc
    .tuple(
      fc.constantFrom('temperature', 'top_p', 'presence_penalty', 'frequency_penalty'),
      fc.oneof(
        fc.double({ min: 2.001, max: 1e9, noNaN: true }),
        fc.double({ min: -1e9, max: -2.001, noNaN: true }),
        fc.constantFrom<unknown>('hot', [], {}, true),
      ),
    )
    .map(([f, v]): [string, unknown] => [f, v]),
);

const wrongMessage = fc.constantFrom<unknown>(
  'hi',
  [],
  [1],
  [null],
  [{}],
  [{ role: 1, content: 'x' }],
  [{ role: 'robot', content: 'x' }],
  [{ role: 'user', content: 5 }],
  [{ role: 'user', content: { text: 'x' } }],
  [{ role: 'user', content: 'x', name: 7 }],
);

const wrongEmbedding = fc.constantFrom<Record<string, unknown>>(
  { model: 'embed' },
  { model: 'embed', input: '' },
  { model: 'embed', input: [] },
  { model: 'embed', input: [1, -1] },
  { model: 'embed', input: [[1], 'a'] },
  { model: 'embed', input: { text: 'x' } },
  { model: 'embed', input: 'x', dimensions: 0 },
  { model: 'embed', input: 'x', encoding_format: 'hex' },
  { model: 7, input: 'x' },
  { model: 'embed', input: Array.from({ length: 2049 }, () => 'x') },
);

const wrongTensor = fc.constantFrom<Record<string, unknown>>(
  {},
  { inputs: [] },
  { inputs: 'x' },
  { inputs: [{}] },
  { inputs: [{ name: 'x', datatype: 'FP99', shape: [1], data: [1] }] },
  { inputs: [{ name: 'x', datatype: 'FP32', shape: 'one', data: [1] }] },
  { inputs: [{ name: 'x', datatype: 'FP32', shape: [-5], data: [1] }] },
  { inputs: [{ name: 1, datatype: 'FP32', shape: [1], data: [1] }] },
  { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: 'abc' }] },
);

/**
 * Every kind, by name. `key` is a valid API key: most kinds send it, so that what is tested is
 * the malformed part and not the missing key.
 */
function kinds(key: string): Record<string, fc.Arbitrary<Spec>> {
  const auth = `Authorization: Bearer ${key}`;
  const json = 'Content-Type: application/json';
  const host = 'Host: gateway';
  /** A chat POST with a body given as text. */
  const chatWith = (body: string, extra: readonly string[] = []): string =>
    http('POST /v1/chat/completions HTTP/1.1', [host, auth, json, ...extra], body, {
      length: true,
    });
  const post = (path: string, body: unknown): string =>
    http(`POST ${path} HTTP/1.1`, [host, auth, json], JSON.stringify(body), { length: true });
  const validChat = chatWith(JSON.stringify(CHAT));
  const validGet = http('GET /v1/models HTTP/1.1', [host, auth]);
  const c = <T>(v: T): fc.Arbitrary<T> => fc.constant(v);

  return {
    // ---- the request line ----
    'line/no-version': c(one(`GET /v1/nothing${CRLF}${CRLF}`)),
    'line/bad-version': c(one(http('GET /v1/nothing HTTP/9.9', [host, auth]))),
    'line/http2-preface': c(one(`PRI * HTTP/2.0${CRLF}${CRLF}SM${CRLF}${CRLF}`)),
    'line/lowercase-method': c(one(http('get /v1/nothing HTTP/1.1', [host, auth]))),
    'line/unknown-method': fc
      .constantFrom('FOO', 'BREW', 'G-T', 'GET\x01')
      .map((m) => one(http(`${m} /v1/nothing HTTP/1.1`, [host, auth]))),
    // Kinds Node's parser may tolerate target a route that is refused anyway (404, 401, ...).
    'line/double-space': c(one(http('GET  /v1/nothing HTTP/1.1', [host, auth]))),
    'line/control-char-in-path': fc
      .constantFrom('\x01', '\x7f', '\x00', '\x1b')
      .map((ch) => one(http(`GET /v1/mo${ch}dels HTTP/1.1`, [host, auth]))),
    'line/missing-path': c(one(http('GET HTTP/1.1', [host, auth]))),
    'line/bad-absolute-form': c(one(http('GET http://[::1/v1/nothing HTTP/1.1', [host, auth]))),
    'line/asterisk-form': c(one(http('OPTIONS * HTTP/1.1', [host, auth]))),
    'line/too-long': fc
      .integer({ min: 20_000, max: 40_000 })
      .map((n) => one(http(`GET /${'a'.repeat(n)} HTTP/1.1`, [host, auth]))),
    'line/bare-lf': c(one(`GET /v1/nothing HTTP/1.1\nHost: gateway\n${auth}\n\n`)),
    'line/bare-cr': c(one(`GET /v1/nothing HTTP/1.1\rHost: gateway\r\r`)),
    'line/binary-garbage': fc
      .uint8Array({ minLength: 1, maxLength: 300 })
      .filter((u) => u[0] !== undefined && !/[A-Za-z]/.test(String.fromCharCode(u[0])))
      .map((u) => one(Buffer.concat([Buffer.from(u), Buffer.from(`${CRLF}${CRLF}`)]))),
    'line/tls-client-hello': c(
      one(Buffer.from('16030100a5010000a10303' + '00'.repeat(40) + '0d0a0d0a', 'hex')),
    ),
    'line/connect': c(one(http('CONNECT example.com:443 HTTP/1.1', [host, auth]))),
    'line/trace': c(one(http('TRACE /v1/nothing HTTP/1.1', [host, auth]))),
    'line/http10-no-host': c(one(`GET /v1/nothing HTTP/1.0${CRLF}${CRLF}`)),

    // ---- headers ----
    'header/no-colon': c(one(http('GET /v1/nothing HTTP/1.1', [host, auth, 'NoColonHere']))),
    'header/space-before-colon': c(one(http('GET /v1/nothing HTTP/1.1', ['Host : gateway', auth]))),
    'header/bad-name-char': fc
      .constantFrom('X@A', 'X A', 'X(A)', 'X"A', '\x01X')
      .map((n) => one(http('GET /v1/nothing HTTP/1.1', [host, auth, `${n}: b`]))),
    'header/nul-in-value': c(one(http('GET /v1/nothing HTTP/1.1', [host, auth, 'X-A: a\x00b']))),
    'header/obs-fold': c(one(http('GET /v1/nothing HTTP/1.1', [host, auth, 'X-A: a', ' folded']))),
    'header/oversized': fc
      .integer({ min: 20_000, max: 60_000 })
      .map((n) => one(http('GET /v1/nothing HTTP/1.1', [host, auth, `X-Big: ${'a'.repeat(n)}`]))),
    'header/too-many': fc
      .integer({ min: 2_500, max: 5_000 })
      .map((n) =>
        one(
          http('GET /v1/nothing HTTP/1.1', [
            host,
            auth,
            ...Array.from({ length: n }, (_, i) => `h${i}: v`),
          ]),
        ),
      ),
    'header/long-name': c(
      one(http('GET /v1/nothing HTTP/1.1', [host, auth, `${'x'.repeat(30_000)}: v`])),
    ),
    'header/duplicate-host': c(one(http('GET /v1/nothing HTTP/1.1', [host, 'Host: other', auth]))),
    'header/missing-host': c(one(http('GET /v1/nothing HTTP/1.1', [auth]))),
    'header/latin1-value': c(
      one(http('POST /v1/chat/completions HTTP/1.1', [host, 'Authorization: Bearer \xe9\xff'])),
    ),
    'header/no-auth': c(
      one(
        http('POST /v1/chat/completions HTTP/1.1', [host, json], JSON.stringify(CHAT), {
          length: true,
        }),
      ),
    ),
    'header/bad-auth': fc
      .constantFrom('Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', 'Bearer sy_sk_x', `Bearer ${key}x`)
      .map((a) => one(http('GET /v1/models HTTP/1.1', [host, `Authorization: ${a}`]))),
    'header/bad-content-type': fc
      .constantFrom(
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data',
        'json',
      )
      .map((t) => one(chatWith(JSON.stringify(CHAT), []).replace(json, `Content-Type: ${t}`))),
    'header/content-encoding': fc
      .constantFrom('gzip', 'br', 'deflate')
      .map((e) => one(chatWith(JSON.stringify(CHAT), [`Content-Encoding: ${e}`]))),
    'header/bad-timeout': fc
      .constantFrom('abc', '-1', '1e3', '0x10', '99999999999')
      .map((t) => one(chatWith(JSON.stringify(CHAT), [`x-switchyard-timeout-ms: ${t}`]))),
    'header/two-timeouts': c(
      one(
        chatWith(JSON.stringify(CHAT), [
          'x-switchyard-timeout-ms: 5',
          'x-switchyard-class: a',
          'x-switchyard-class: b',
        ]),
      ),
    ),
    'header/upgrade-websocket': c(
      one(
        http('GET /v1/nothing HTTP/1.1', [host, auth, 'Upgrade: websocket', 'Connection: Upgrade']),
      ),
    ),
    'header/expect-weird': c(one(chatWith('{', ['Expect: nonsense']))),

    // ---- content length ----
    'length/duplicate-different': c(
      one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Content-Length: 1', 'Content-Length: 2'],
          '{}',
        ),
      ),
    ),
    'length/negative': c(
      one(
        http('POST /v1/chat/completions HTTP/1.1', [host, auth, json, 'Content-Length: -1'], '{}'),
      ),
    ),
    'length/not-a-number': fc
      .constantFrom('abc', '1e3', '0x10', '+5', '1 0', '')
      .map((v) =>
        one(
          http(
            'POST /v1/chat/completions HTTP/1.1',
            [host, auth, json, `Content-Length: ${v}`],
            '{}',
          ),
        ),
      ),
    'length/huge': c(
      one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Content-Length: 99999999999999999999'],
          '{}',
        ),
      ),
    ),
    'length/over-limit-declared': fc
      .integer({ min: CORPUS_BODY_LIMIT + 1, max: 10 * CORPUS_BODY_LIMIT })
      // Only the head is sent: the 413 cannot depend on the body.
      .map((n) =>
        one(http('POST /v1/chat/completions HTTP/1.1', [host, auth, json, `Content-Length: ${n}`])),
      ),
    'length/over-limit-sent': fc
      .integer({ min: CORPUS_BODY_LIMIT + 1, max: 4 * CORPUS_BODY_LIMIT })
      .map((n) => one(chatWith(' '.repeat(n)))),
    'length/body-shorter-then-hang-up': c({
      ...one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Content-Length: 500'],
          '{"model":',
        ),
      ),
      hangUpAfterMs: 200,
      answers: 0,
    }),
    'length/body-longer': c({
      // The declared length stops 5 bytes early: the rest is read as a second request, garbage.
      ...one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, `Content-Length: ${JSON.stringify(CHAT).length - 5}`],
          JSON.stringify(CHAT),
        ) + `XX${CRLF}${CRLF}`,
      ),
      answers: 2,
    }),

    // ---- transfer encoding and smuggling ----
    'smuggling/cl-and-te': c(
      one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Content-Length: 4', 'Transfer-Encoding: chunked'],
          `0${CRLF}${CRLF}GET /admin/mode HTTP/1.1${CRLF}${host}${CRLF}${CRLF}`,
        ),
      ),
    ),
    'smuggling/te-and-cl': c(
      one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Transfer-Encoding: chunked', 'Content-Length: 4'],
          `0${CRLF}${CRLF}`,
        ),
      ),
    ),
    'smuggling/te-obfuscated': fc
      .constantFrom('xchunked', 'chunked, identity', 'chunked , chunked', 'identity', 'chunked\x0b')
      .map((te) =>
        one(
          http(
            'POST /v1/chat/completions HTTP/1.1',
            [host, auth, json, `Transfer-Encoding: ${te}`],
            `0${CRLF}${CRLF}`,
          ),
        ),
      ),
    'smuggling/te-gzip-only': c(
      one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Transfer-Encoding: gzip'],
          'abc',
        ),
      ),
    ),
    'smuggling/te-duplicated-header': c(
      one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'],
          `0${CRLF}${CRLF}`,
        ),
      ),
    ),

    // ---- chunked bodies ----
    'chunked/bad-size': fc
      .constantFrom('zz', 'g', '-1', '0x5', '5 5', '')
      .map((size) =>
        one(
          http(
            'POST /v1/chat/completions HTTP/1.1',
            [host, auth, json, 'Transfer-Encoding: chunked'],
            `${size}${CRLF}hello${CRLF}0${CRLF}${CRLF}`,
          ),
        ),
      ),
    'chunked/size-overflow': c(
      one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Transfer-Encoding: chunked'],
          `ffffffffffffffffffff${CRLF}abc${CRLF}`,
        ),
      ),
    ),
    'chunked/missing-crlf': c(
      one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Transfer-Encoding: chunked'],
          `2${CRLF}{}XX0${CRLF}${CRLF}`,
        ),
      ),
    ),
    'chunked/bad-extension': c(
      one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Transfer-Encoding: chunked'],
          `2;\x01${CRLF}{}${CRLF}0${CRLF}${CRLF}`,
        ),
      ),
    ),
    'chunked/bad-trailer': c(
      one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Transfer-Encoding: chunked'],
          `2${CRLF}{}${CRLF}0${CRLF}bad trailer${CRLF}${CRLF}`,
        ),
      ),
    ),
    'chunked/over-limit': fc.integer({ min: 2, max: 6 }).map((k) => {
      const chunk = `8000${CRLF}${'x'.repeat(0x8000)}${CRLF}`;
      return one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Transfer-Encoding: chunked'],
          chunk.repeat(k + 1) + `0${CRLF}${CRLF}`,
        ),
      );
    }),
    'chunked/valid-but-bad-json': brokenJson.map((b) => {
      const size = Buffer.byteLength(b, 'latin1').toString(16);
      return one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Transfer-Encoding: chunked'],
          `${size}${CRLF}${b}${CRLF}0${CRLF}${CRLF}`,
        ),
      );
    }),
    'chunked/truncated-then-hang-up': c({
      ...one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Transfer-Encoding: chunked'],
          `10${CRLF}{"model"`,
        ),
      ),
      answers: 0,
      hangUpAfterMs: 200,
    }),

    // ---- JSON bodies ----
    'json/empty': c(one(chatWith(''))),
    'json/broken': brokenJson.map((b) => one(chatWith(b))),
    'json/not-an-object': fc
      .constantFrom('[]', '1', '"s"', 'null', 'true', '[{"model":"chat"}]')
      .map((b) => one(chatWith(b))),
    'json/non-finite': fc
      .constantFrom('1e999', '-1e400', '9'.repeat(400), `1${'0'.repeat(300)}e10`, '2E+308')
      .map((n) =>
        one(
          chatWith(
            `{"model":"chat","messages":[{"role":"user","content":"x"}],"temperature":${n}}`,
          ),
        ),
      ),
    'json/deep-nesting': fc
      .integer({ min: 129, max: 20_000 })
      .map((n) => one(chatWith(`{"model":"chat","x":${'['.repeat(n)}${']'.repeat(n)}}`))),
    'json/deep-objects': fc
      .integer({ min: 129, max: 5_000 })
      .map((n) =>
        one(
          chatWith(
            `{"model":"chat","messages":[{"role":"user","content":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}]}`,
          ),
        ),
      ),
    'json/proto-key': fc
      .constantFrom(
        '{"__proto__":{"polluted":"yes"},"model":"chat","messages":[{"role":"user","content":"x"}]}',
        '{"model":"chat","messages":[{"role":"user","content":"x","__proto__":{"polluted":"yes"}}]}',
        '{"\\u005f_proto__":{"polluted":"yes"}}',
      )
      .map((b) => one(chatWith(b))),
    'json/constructor-prototype': c(
      one(chatWith('{"constructor":{"prototype":{"polluted":"yes"}},"model":"chat"}')),
    ),
    'json/invalid-utf8': fc
      .constantFrom([0xc3, 0x28], [0xff], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80])
      .map((bad) => {
        const body = Buffer.concat([
          Buffer.from('{"model":"chat","messages":[{"role":"user","content":"'),
          Buffer.from(bad),
          Buffer.from('"}],"temperature":-1}'),
        ]);
        const head = http('POST /v1/chat/completions HTTP/1.1', [
          host,
          auth,
          json,
          `Content-Length: ${body.length}`,
        ]);
        return one(Buffer.concat([Buffer.from(head, 'latin1'), body]));
      }),
    'json/bom': brokenJson.map((b) => one(chatWith(`\xef\xbb\xbf${b}`))),
    'json/nul-bytes': c(one(chatWith(`{"model":"chat"\x00}`))),
    'json/huge-number': c(
      one(
        chatWith(
          `{"model":"chat","messages":[{"role":"user","content":"x"}],"n":${'9'.repeat(200)}}`,
        ),
      ),
    ),
    'json/duplicate-keys': c(one(chatWith('{"model":"chat","model":7,"messages":[]}'))),
    'json/chat-wrong-field': wrongChatField.map(([field, value]) =>
      one(post('/v1/chat/completions', { ...CHAT, [field]: value })),
    ),
    'json/chat-wrong-messages': wrongMessage.map((messages) =>
      one(post('/v1/chat/completions', { model: 'chat', messages })),
    ),
    'json/chat-unknown-model': fc
      .constantFrom('nope', '', '../chat', '__proto__', 'constructor', 'a'.repeat(300))
      .map((model) => one(post('/v1/chat/completions', { ...CHAT, model }))),
    'json/embeddings-wrong': wrongEmbedding.map((b) => one(post('/v1/embeddings', b))),
    'json/kserve-wrong': wrongTensor.map((b) => one(post('/v2/models/tensor/infer', b))),
    'json/kserve-binary-extension': c(
      one(
        http(
          'POST /v2/models/tensor/infer HTTP/1.1',
          [host, auth, json, 'Inference-Header-Content-Length: 12'],
          '{"inputs":[]}',
          { length: true },
        ),
      ),
    ),
    'json/journey-unknown': c(one(post('/v1/journeys/nope', { input: 'x' }))),
    'json/journey-broken': brokenJson.map((b) =>
      one(http('POST /v1/journeys/nope HTTP/1.1', [host, auth, json], b, { length: true })),
    ),

    // ---- paths and methods ----
    'path/traversal': fc
      .constantFrom('/../../etc/passwd', '/v1/../admin/mode', '/v1/%2e%2e/admin', '/..%2f..%2fetc')
      .map((p) => one(http(`GET ${p} HTTP/1.1`, [host, auth]))),
    'path/percent-nul': c(one(http('GET /v1/models/%00 HTTP/1.1', [host, auth]))),
    'path/bad-percent': c(one(http('GET /v1/models/%ZZ HTTP/1.1', [host, auth]))),
    'path/long-segment': c(one(http(`GET /v1/models/${'a'.repeat(5_000)} HTTP/1.1`, [host, auth]))),
    'path/unknown': fc
      .array(fc.constantFrom('a', 'v2', 'x y', '%20', 'é', '..', '~', 'index.php', '.env', ''), {
        minLength: 1,
        maxLength: 6,
      })
      .map((parts) => one(http(`GET /nowhere/${parts.join('/')} HTTP/1.1`, [host, auth]))),
    'path/wrong-method': fc
      .constantFrom(
        'DELETE /v1/chat/completions',
        'PUT /v1/models',
        'PATCH /v1/embeddings',
        'GET /v1/chat/completions',
      )
      .map((l) => one(http(`${l} HTTP/1.1`, [host, auth]))),
    'path/double-slash': c(one(http('GET //v1//chat//completions HTTP/1.1', [host, auth]))),
    'path/proto-query': c(
      one(
        http('POST /v1/chat/completions?__proto__[x]=1 HTTP/1.1', [host, auth, json], '{', {
          length: true,
        }),
      ),
    ),
    'path/admin-without-admin-key': c(one(http('GET /admin/mode HTTP/1.1', [host, auth]))),
    'path/shard-bad-op': c(one(post('/v1/vector-shards/x/explode', {}))),

    // ---- slow and partial senders ----
    'slow/headers-slowloris': fc.integer({ min: 1, max: 5 }).map((n) => {
      // Well-formed header lines, one byte every 100 ms: the headers would take minutes.
      const lines = Array.from(
        { length: 60 },
        (_, i) => `X-Slow-${i}: ${'v'.repeat(n)}${CRLF}`,
      ).join('');
      return {
        ...one(`GET /v1/nothing HTTP/1.1${CRLF}${host}${CRLF}`),
        drip: { chunks: [...lines].map((ch) => Buffer.from(ch)), everyMs: 100 },
      };
    }),
    'slow/body-trickle': c({
      ...one(
        http(
          'POST /v1/chat/completions HTTP/1.1',
          [host, auth, json, 'Content-Length: 5000'],
          '{"model":',
        ),
      ),
      drip: { chunks: Array.from({ length: 600 }, () => Buffer.from(' ')), everyMs: 100 },
    }),
    'slow/partial-line-then-hang-up': c({
      ...one('POST /v1/chat/comp'),
      answers: 0,
      hangUpAfterMs: 200,
    }),
    'slow/partial-headers-half-close': c({
      ...one(`GET /v1/nothing HTTP/1.1${CRLF}${host}${CRLF}X-Half: `),
      halfClose: true,
    }),
    'slow/nothing-then-hang-up': c({
      bytes: Buffer.alloc(0),
      answers: 0,
      ok: 0,
      hangUpAfterMs: 200,
    }),

    // ---- pipelining with garbage ----
    'pipeline/valid-then-garbage': fc
      .constantFrom(
        'BLAH\r\n\r\n',
        '\x00\x01\x02\r\n\r\n',
        'GET\r\n\r\n',
        'HTTP/1.1 200 OK\r\n\r\n',
      )
      .map((g) => ({ ...one(validGet + g), answers: 2, ok: 1 })),
    'pipeline/two-chats-then-garbage': c({
      ...one(validChat + validChat + 'BLAH\r\n\r\n'),
      answers: 3,
      ok: 2,
    }),
    'pipeline/valid-then-bad-chunked': c({
      ...one(
        validGet +
          http(
            'POST /v1/chat/completions HTTP/1.1',
            [host, auth, json, 'Transfer-Encoding: chunked'],
            `zz${CRLF}x${CRLF}`,
          ),
      ),
      answers: 2,
      ok: 1,
    }),
    'pipeline/many-bad-requests': fc.integer({ min: 2, max: 8 }).map((n) => ({
      ...one(Array.from({ length: n }, () => chatWith('{')).join('')),
      answers: n,
    })),
    'pipeline/valid-then-hang-up': c({
      ...one(validChat + validChat + validChat),
      answers: 0,
      ok: 3,
      hangUpAfterMs: 5,
    }),
  };
}

/** Every kind the corpus has. */
export function corpusKinds(key: string): readonly string[] {
  return Object.keys(kinds(key));
}

/**
 * `perKind` cases of every kind (constant kinds repeat their one case), reproducible from `seed`.
 * Cases come kind by kind, in the order above.
 */
export function malformedCorpus(key: string, seed: number, perKind: number): MalformedCase[] {
  const out: MalformedCase[] = [];
  let i = 0;
  for (const [kind, arb] of Object.entries(kinds(key))) {
    for (const spec of fc.sample(arb, { seed: seed + i++, numRuns: perKind }))
      out.push({ kind, ...spec });
  }
  return out;
}

/** How one case went: what was read, and each way the answers broke the contract. */
export interface CaseResult {
  readonly kind: string;
  readonly statuses: readonly number[];
  readonly problems: readonly string[];
}

/** Sends one case over a raw socket and judges what came back. */
export async function runCase(
  port: number,
  c: MalformedCase,
  timeoutMs = 8_000,
): Promise<CaseResult> {
  const conv = await rawConversation(port, c.bytes, {
    timeoutMs,
    ...(c.answers > 0 ? { hangUpAfter: c.answers } : {}),
    ...(c.hangUpAfterMs === undefined ? {} : { hangUpAfterMs: c.hangUpAfterMs }),
    ...(c.halfClose === true ? { halfClose: true } : {}),
    ...(c.drip === undefined ? {} : { drip: c.drip }),
  });
  return {
    kind: c.kind,
    statuses: conv.responses.map((r) => r.status),
    problems: judge(c, conv.responses),
  };
}

/**
 * The contract: no 5xx ever; the answers a case waits for all arrive; each one past the valid
 * requests is a 4xx whose JSON body carries a registry code of that same status.
 */
export function judge(c: MalformedCase, responses: readonly RawResponse[]): string[] {
  const problems: string[] = [];
  const optional = c.hangUpAfterMs !== undefined;
  if (!optional && responses.length < c.answers)
    problems.push(`${responses.length} of ${c.answers} answers`);
  responses.forEach((r, i) => {
    if (r.status >= 500) problems.push(`answer ${i}: ${r.status}`);
    if (i < c.ok && r.status < 400) return;
    if (r.status < 400 || r.status >= 500) {
      problems.push(`answer ${i}: ${r.status}, not a 4xx`);
      return;
    }
    if (!/^application\/json/.test(r.headers['content-type'] ?? ''))
      problems.push(`answer ${i}: content-type ${r.headers['content-type'] ?? 'none'}`);
    let code: string | undefined;
    try {
      const body = JSON.parse(r.body.toString('utf8')) as {
        error?: { code?: string } | string;
        code?: string;
      };
      code = typeof body.error === 'object' ? body.error.code : body.code;
    } catch {
      problems.push(`answer ${i}: body is not JSON`);
      return;
    }
    const entry =
      code === undefined ? undefined : ERROR_REGISTRY[code as keyof typeof ERROR_REGISTRY];
    if (entry === undefined)
      problems.push(`answer ${i}: code ${String(code)} is not in the registry`);
    else if (entry.status !== r.status)
      problems.push(`answer ${i}: ${code} with status ${r.status}`);
  });
  return problems;
}
