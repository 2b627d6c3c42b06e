import { describe, expect, it } from 'vitest';
import {
  codeBlocks,
  docExamples,
  matchHttp,
  matchJson,
  matchOutput,
  matchText,
  parseJsonStream,
  pointAt,
} from './doc-examples.js';

const fence = '```';

describe('the documented-example format', () => {
  it('finds an sh block followed directly by its output block, and the variables set before it', () => {
    const md = [
      'Keys:',
      '',
      `${fence}sh`,
      'export SY_KEY=sy_sk_abc   # tenant "superapp"',
      `${fence}`,
      '',
      `${fence}sh`,
      "curl -s http://127.0.0.1:8080/healthz -H 'x: y'",
      `${fence}`,
      '',
      `${fence}json`,
      '{ "status": "ok" }',
      `${fence}`,
    ].join('\n');
    const { steps, unchecked } = docExamples(md);
    expect(unchecked).toEqual([]);
    expect(steps).toEqual([
      { kind: 'env', line: 3, vars: { SY_KEY: 'sy_sk_abc' } },
      {
        kind: 'example',
        line: 7,
        command: "curl -s http://127.0.0.1:8080/healthz -H 'x: y'",
        output: 'json',
        expected: '{ "status": "ok" }',
      },
    ]);
  });

  it('reports a curl to the gateway whose output is not shown, or is separated by prose', () => {
    const md = [
      `${fence}sh`,
      'curl -s localhost:8080/metrics',
      `${fence}`,
      'It prints:',
      `${fence}text`,
      'x',
      `${fence}`,
      `${fence}sh`,
      'npm start',
      `${fence}`,
    ].join('\n');
    const { steps, unchecked } = docExamples(md);
    expect(steps).toEqual([]);
    expect(unchecked).toEqual([{ line: 1, command: 'curl -s localhost:8080/metrics' }]);
  });

  it('keeps the text of indented blocks and longer fences', () => {
    const md = ['  ````json', '  {"a": 1}', '  ````'].join('\n');
    expect(codeBlocks(md)).toEqual([{ lang: 'json', text: '{"a": 1}', line: 1, adjacent: false }]);
  });

  it("points the docs' address at the test gateway, with or without a scheme", () => {
    expect(pointAt('curl http://127.0.0.1:8080/a localhost:8080/b', 'http://127.0.0.1:4321')).toBe(
      'curl http://127.0.0.1:4321/a 127.0.0.1:4321/b',
    );
  });

  it('matches JSON structurally, with … for values that change', () => {
    const shown = { id: 'chatcmpl-…', created: '…', usage: { total: 13 }, list: [1, '…'] };
    expect(
      matchJson(shown, { id: 'chatcmpl-x1', created: 17, usage: { total: 13 }, list: [1, 2, 3] }),
    ).toEqual([]);
    expect(matchJson({ ms: '0.…' }, { ms: 0.25 })).toEqual([]);
    expect(matchJson({ a: 1 }, { a: 1, b: 2 })).toEqual(['$.b: not shown in the docs (2)']);
    expect(matchJson({ a: 1, '…': '…' }, { a: 1, b: 2 })).toEqual([]);
    expect(matchJson({ a: [1, 2] }, { a: [1] })).toEqual(['$.a: expected 2 items, got 1']);
    expect(matchJson({ a: 'x…' }, { a: 'yx' })).toEqual(['$.a: expected "x…", got "yx"']);
    expect(matchJson({ a: '…' }, {})).toEqual(['$.a: missing']);
  });

  it('reads several JSON values printed one after another', () => {
    expect(parseJsonStream('{"a":"}"}\n[1,[2]] "s\\"" 3 true')).toEqual([
      { a: '}' },
      [1, [2]],
      's"',
      3,
      true,
    ]);
  });

  it('matches text line by line, a … line standing for any lines', () => {
    expect(matchText('a\n…\nz 1…', 'a\nb\nc\nz 12\n')).toEqual([]);
    expect(matchText('a\n…', 'a')).toEqual([]);
    expect(matchText('a\nb', 'a\nc')).toHaveLength(1);
  });

  it('matches curl -si output: status, the shown headers, and the body', () => {
    const got =
      'HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 60\r\nx-request-id: 9\r\n\r\n{"error":{"code":"SY_ERR_QUOTA_EXCEEDED"}}';
    expect(
      matchHttp(
        'HTTP/1.1 429 Too Many Requests\nretry-after: …\n\n{"error": {"code": "SY_ERR_QUOTA_EXCEEDED"}}',
        got,
      ),
    ).toEqual([]);
    expect(matchHttp('HTTP/1.1 200 OK\nx-switchyard-route: a\n\n…', got)).toEqual([
      'status: expected HTTP/1.1 200 OK, got HTTP/1.1 429 Too Many Requests',
      'header x-switchyard-route: missing',
    ]);
  });

  it('refuses a json block that is not JSON', () => {
    expect(matchOutput('json', '{ a: 1 }', '{"a":1}')[0]).toMatch(/not JSON/);
  });
});
