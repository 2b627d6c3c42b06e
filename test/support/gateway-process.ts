import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { launchFlags } from '../../bench/lib/launch.js';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { baseConfig, TEST_SECRET } from './gateway.js';

const ROOT = join(import.meta.dirname, '../..');

/** A child process of a real-process test: killed by pid when the test ends, whatever happens. */
export interface TestProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** What the ready line announced (its first group), such as the URL. */
  readonly url: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Sends a signal by pid (SIGSTOP, SIGCONT, SIGKILL, ...). */
  signal(sig: NodeJS.Signals): void;
  /** Resolves with the exit code (or the signal name) once the process has ended. */
  exited(): Promise<number | string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) if (c.pid !== undefined) safeKill(c.pid, 'SIGKILL');
});

function safeKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

export interface StartProcessOptions {
  /** Arguments to node (flags, script, its arguments). */
  readonly nodeArgs: readonly string[];
  /** Matched against everything printed; its first group becomes `url`. */
  readonly ready: RegExp;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
  /** Runs the process in this network namespace (`ip netns exec`, which keeps the pid). */
  readonly netns?: string;
}

/** Starts `node <nodeArgs>` and resolves once its output matches `ready`. */
export async function startProcess(opts: StartProcessOptions): Promise<TestProcess> {
  const [cmd, args] =
    opts.netns === undefined
      ? [process.execPath, [...opts.nodeArgs]]
      : ['ip', ['netns', 'exec', opts.netns, process.execPath, ...opts.nodeArgs]];
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn node');
  live.add(child);
  let out = '';
  const ended = new Promise<number | string>((resolve) =>
    child.once('exit', (code, sig) => {
      live.delete(child);
      resolve(code ?? sig ?? -1);
    }),
  );
  const onData = (b: Buffer): void => {
    out += b.toString('utf8');
    if (out.length > 4_000_000) out = out.slice(-2_000_000);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      safeKill(pid, 'SIGKILL');
      reject(new Error(`not ready after ${opts.timeoutMs ?? 20_000} ms:\n${out.slice(-4000)}`));
    }, opts.timeoutMs ?? 20_000);
    const check = (): void => {
      const m = opts.ready.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      child.stdout.off('data', check);
      child.stderr.off('data', check);
      resolve(m[1] ?? '');
    };
    child.stdout.on('data', check);
    child.stderr.on('data', check);
    void ended.then((code) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before it was ready:\n${out.slice(-4000)}`));
    });
  });
  return {
    pid,
    child,
    url,
    output: () => out,
    signal: (sig) => safeKill(pid, sig),
    exited: () => ended,
    stop: async (graceMs = 5_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      safeKill(pid, 'SIGTERM');
      const killer = setTimeout(() => safeKill(pid, 'SIGKILL'), graceMs);
      await ended;
      clearTimeout(killer);
    },
  };
}

/** A `switchyard serve` child process (the built bin, with its launch flags) on a temp config. */
export interface ProcessGateway extends TestProcess {
  /** A valid key of tenant `acme`. */
  readonly key: string;
  readonly dir: string;
  readonly configPath: string;
  /** Stops the process and removes its temp directory. */
  close(): Promise<void>;
}

export interface ProcessGatewayOptions {
  /** Config merged over the test base config (tenant `acme` with one key, port 0). */
  readonly config?: Record<string, unknown>;
  /** Files to write into the gateway's directory before it starts (relative name → content). */
  readonly files?: Readonly<Record<string, string>>;
  readonly env?: NodeJS.ProcessEnv;
  /** Extra node flags after the bin's own. */
  readonly nodeFlags?: readonly string[];
  /** Makes the `acme` key an admin key (the /admin routes). */
  readonly admin?: boolean;
  /** Extra `serve` arguments (`--workers 2`). */
  readonly args?: readonly string[];
  /** Runs the gateway in this network namespace (a multi-node test's own network). */
  readonly netns?: string;
}

/**
 * Starts the gateway as users run it: `node <bin flags> dist/cli/index.js serve --config ...`.
 * Needs `npm run build` first (the test command builds before it runs the tests).
 */
export async function startProcessGateway(
  opts: ProcessGatewayOptions = {},
): Promise<ProcessGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-proc-'));
  writeFileSync(join(dir, 'secret.txt'), TEST_SECRET);
  for (const [name, content] of Object.entries(opts.files ?? {}))
    writeFileSync(join(dir, name), content);
  const key = generateKey('sk');
  const configPath = join(dir, 'switchyard.yaml');
  const base = baseConfig(hashKey(key, TEST_SECRET));
  if (opts.admin === true)
    base['tenants'] = {
      acme: { keys: [{ id: 'k1', hash: hashKey(key, TEST_SECRET), admin: true }], models: ['*'] },
    };
  writeFileSync(configPath, stringify({ ...base, log: { level: 'warn' }, ...opts.config }));
  let proc: TestProcess;
  try {
    proc = await startProcess({
      nodeArgs: [
        ...launchFlags(ROOT),
        ...(opts.nodeFlags ?? []),
        join(ROOT, 'dist/cli/index.js'),
        'serve',
        '--config',
        configPath,
        '--no-watch',
        ...(opts.args ?? []),
      ],
      ready: /listening on (http:\/\/\S+)/,
      ...(opts.env === undefined ? {} : { env: opts.env }),
      ...(opts.netns === undefined ? {} : { netns: opts.netns }),
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    ...proc,
    key,
    dir,
    configPath,
    close: async () => {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
