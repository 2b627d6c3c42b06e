import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');

/**
 * Where the request path lives: everything under src/ but the CLI, config loading, the model
 * toolkit, the stores and the wiring, which run at start, on admin calls or behind a batch.
 */
const COLD = ['cli', 'config', 'modelkit', 'state', 'wiring'].map((d) => `src/${d}/`);

/**
 * Object literals that spread an object and then add keys its type does not have, in the
 * non-test sources of the request path: `file:line key,key`. On Node 20 each such key takes
 * V8's slow path, about 1 µs every time (the ONNX batcher's queue entry added nine: 14.5 µs per
 * request); `extend` (src/core/objects.ts) makes the same object in ~0.1 µs, as does a literal
 * whose own keys come before its spreads. Types with an index signature or a union are skipped
 * (the checker cannot tell whether the key is there), and so are optional keys.
 */
function spreadThenAdd(): string[] {
  const parsed = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  });
  if (parsed === undefined) throw new Error('tsconfig.json did not parse');
  const program = ts.createProgram(parsed.fileNames, parsed.options);
  const checker = program.getTypeChecker();
  const found: string[] = [];
  for (const sf of program.getSourceFiles()) {
    const file = relative(ROOT, sf.fileName);
    if (!file.startsWith('src/') || file.endsWith('.test.ts')) continue;
    if (COLD.some((d) => file.startsWith(d))) continue;
    const visit = (node: ts.Node): void => {
      if (ts.isObjectLiteralExpression(node) && node.properties.length > 1) {
        const first = node.properties[0]!;
        if (ts.isSpreadAssignment(first)) {
          const type = checker.getTypeAtLocation(first.expression);
          const added: string[] = [];
          if (type.getStringIndexType() === undefined && !type.isUnion())
            for (const p of node.properties.slice(1)) {
              if (ts.isSpreadAssignment(p) || p.name === undefined) continue;
              if (!ts.isIdentifier(p.name) && !ts.isStringLiteral(p.name)) continue;
              if (type.getProperty(p.name.text) === undefined) added.push(p.name.text);
            }
          if (added.length > 0) {
            const { line } = sf.getLineAndCharacterOfPosition(node.getStart());
            found.push(`${file}:${line + 1} ${added.join(',')}`);
          }
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return found;
}

describe('object literals on the request path', () => {
  it('never spread an object and then add keys it lacks (use extend, or own keys first)', () => {
    expect(spreadThenAdd()).toEqual([]);
  }, 60_000);
});
