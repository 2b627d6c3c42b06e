import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseBatchInput } from './batch-lines.js';

const SEED = 16_003;
const line = (customId: string, url = '/v1/chat/completions', body: unknown = { model: 'chat' }) =>
  JSON.stringify({ custom_id: customId, method: 'POST', url, body });

describe('parseBatchInput (#16)', () => {
  it('keeps every valid line in order, with its index and 1-based line number, skipping blank lines', () => {
    const text = [line('a'), '', '  ', line('b'), line('c')].join('\n');
    const { lines, errors } = parseBatchInput(Buffer.from(text), '/v1/chat/completions', 10);
    expect(errors).toEqual([]);
    expect(lines.map((l) => [l.index, l.line, l.customId, l.model])).toEqual([
      [0, 1, 'a', 'chat'],
      [1, 4, 'b', 'chat'],
      [2, 5, 'c', 'chat'],
    ]);
  });

  it('names each bad line: JSON, custom_id, method, endpoint, body, and the line cap; a stream line is kept for the runner to refuse', () => {
    const text = [
      '[1]',
      line(''),
      JSON.stringify({ custom_id: 'g', method: 'GET', url: '/v1/chat/completions', body: {} }),
      line('e', '/v1/embeddings'),
      line('n', '/v1/chat/completions', { messages: [] }),
      line('s', '/v1/chat/completions', { model: 'chat', stream: true }),
      line('ok'),
      line('ok'),
      '{"__proto__": {}}',
      line('last'),
      line('over'),
    ].join('\n');
    const { lines, errors } = parseBatchInput(Buffer.from(text), '/v1/chat/completions', 3);
    expect(lines.map((l) => l.customId)).toEqual(['s', 'ok', 'last']);
    expect(errors.map((e) => [e.line, e.code])).toEqual([
      [1, 'invalid_json_line'],
      [2, 'missing_required_parameter'],
      [3, 'invalid_method'],
      [4, 'mismatched_endpoint'],
      [5, 'missing_required_parameter'],
      [8, 'duplicate_custom_id'],
      [9, 'invalid_json_line'],
      [11, 'too_many_lines'],
    ]);
  });

  it('calls an empty file an error', () => {
    expect(parseBatchInput(Buffer.from('\n\n'), '/v1/embeddings', 5).errors[0]?.code).toBe(
      'empty_file',
    );
  });

  it('never throws, and accounts for every non-blank line once, whatever the bytes', () => {
    const anyLine = fc.oneof(
      fc.string(),
      fc.string({ minLength: 1 }).map((id) => line(id)),
      fc.jsonValue().map((v) => JSON.stringify(v)),
    );
    fc.assert(
      fc.property(fc.array(anyLine, { maxLength: 30 }), (raw) => {
        const text = raw.join('\n');
        const { lines, errors } = parseBatchInput(Buffer.from(text), '/v1/chat/completions', 1_000);
        const nonBlank = text.split('\n').filter((l) => l.trim() !== '').length;
        if (nonBlank === 0) expect(errors.map((e) => e.code)).toEqual(['empty_file']);
        else expect(lines.length + errors.length).toBe(nonBlank);
        expect(new Set(lines.map((l) => l.customId)).size).toBe(lines.length);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});
