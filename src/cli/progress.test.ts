import { Writable } from 'node:stream';
import { expect, it } from 'vitest';
import type { CliIo } from './io.js';
import { createProgress } from './progress.js';

/** A terminal-like stream that keeps what is drawn (readline's escapes work on any stream). */
function terminal(): { stream: NodeJS.WriteStream; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString('utf8');
      cb();
    },
  });
  Object.assign(stream, { isTTY: true, columns: 120 });
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => text };
}

it('draws one cli-progress bar per task on a terminal, redrawn in place, several at once', () => {
  const t = terminal();
  const plain: string[] = [];
  const io: CliIo = {
    out: () => undefined,
    err: (s) => void plain.push(s),
    tty: true,
    errStream: t.stream,
  };
  const progress = createProgress(io);
  const a = progress.bar('build s1');
  const b = progress.bar('build s2');
  const demo = progress.stages('demo models');
  a(50, 200);
  b(10, 100);
  demo('intent: train', 40);
  a(200, 200);
  b(100, 100);
  demo('done', 100);
  progress.stop();
  const drawn = t.text();
  expect(drawn).toMatch(/build s1 \[[^\]]+\] 100% 200\/200/);
  expect(drawn).toMatch(/build s2 \[[^\]]+\] 100% 100\/100/);
  expect(drawn).toMatch(/demo models \[[^\]]+\] 100% done/);
  // Cursor movement and line clearing: redrawn in place, not appended.
  expect(drawn).toContain('\x1b[');
  expect(plain).toEqual([]);
});

it('prints plain lines without a terminal: a counted task at each tenth, a staged task at each stage', () => {
  const lines: string[] = [];
  const progress = createProgress({
    out: () => undefined,
    err: (s) => void lines.push(s),
    tty: false,
  });
  const bar = progress.bar('build s1');
  for (let i = 0; i <= 1000; i++) bar(i, 1000);
  const stages = progress.stages('demo');
  stages('intent: data', 0);
  stages('intent: data', 3);
  stages('intent: train', 10);
  stages('done', 100);
  progress.stop();
  expect(lines).toHaveLength(11 + 3);
  expect(lines[0]).toBe(`build s1 [${'.'.repeat(30)}]   0% 0/1000 0/s\n`);
  expect(lines[10]).toMatch(/^build s1 \[#{30}\] 100% 1000\/1000 \d+\/s\n$/);
  expect(lines.slice(11)).toEqual([
    '[  0%] intent: data\n',
    '[ 10%] intent: train\n',
    '[100%] done\n',
  ]);
  expect(lines.join('')).not.toContain('\x1b');
});
