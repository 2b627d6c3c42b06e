import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts the worker `<name>` of the folder of `from` (the caller's `import.meta.url`): the
 * compiled `<name>.js`, or (tests, benches and `tsx` runs from src/) a bootstrap that registers
 * tsx inside the worker, then imports `<name>.ts`. Node 20 ignores `--import tsx` in a worker's
 * execArgv (see backends/onnx/worker-pool.ts).
 */
export function startWorker(from: string, name: string, options: WorkerOptions = {}): Worker {
  const js = new URL(`./${name}.js`, from);
  if (existsSync(fileURLToPath(js))) return new Worker(js, options);
  const ts = new URL(`./${name}.ts`, from).href;
  const tsx =
    typeof import.meta.resolve === 'function' ? import.meta.resolve('tsx/esm/api') : 'tsx/esm/api';
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); }).catch((err) => { throw err; });`;
  return new Worker(code, { ...options, eval: true });
}
