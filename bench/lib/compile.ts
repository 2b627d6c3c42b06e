import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import ts from 'typescript';

/**
 * Transpiles a self-contained bench script (upstream, floor proxy, load generator) to plain
 * JavaScript, so that its process runs on bare `node` like the compiled gateway: no tsx loader
 * thread in its RSS, CPU time or profile. Output goes to node_modules/.cache/switchyard-bench/
 * (where `undici` and `autocannon` still resolve). No type checking: tsc does that.
 */
export function compileScript(root: string, file: string): string {
  const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
    fileName: file,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2023,
      verbatimModuleSyntax: true,
    },
  });
  if (/\bfrom\s+['"]\.{1,2}\//.test(outputText)) {
    throw new Error(`${file}: a bench child script may import only packages (and types)`);
  }
  const dir = join(root, 'node_modules/.cache/switchyard-bench');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, basename(file).replace(/\.ts$/, '.mjs'));
  writeFileSync(out, outputText);
  return out;
}
