import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * Child processes pinned to a core with `taskset -c` (which execs node, so the child's pid is
 * node's own and /proc/<pid> describes the measured process). Every child is tracked by pid and
 * killed by pid on exit, on SIGINT/SIGTERM and on errors.
 */
export interface Pinned {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** What the ready line announced (a URL). */
  readonly url: string;
  /** The end of what the child printed, for error messages. */
  tail(): string;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnPinnedOptions {
  readonly name: string;
  readonly core: number;
  /** Arguments to node: flags, then the script and its arguments. */
  readonly nodeArgs: readonly string[];
  /** Matched against each output line; its first group is the child's URL. */
  readonly ready: RegExp;
  /** `ignore` sends stdout to /dev/null (the gateway's request log goes there). */
  readonly stdout: 'pipe' | 'ignore';
  readonly ipc?: boolean;
  readonly cwd?: string;
  readonly timeoutMs?: number;
  /** Extra environment variables for the child. */
  readonly env?: Readonly<Record<string, string>>;
}

const live = new Map<number, ChildProcess>();

export async function spawnPinned(opts: SpawnPinnedOptions): Promise<Pinned> {
  const child = spawn('taskset', ['-c', String(opts.core), process.execPath, ...opts.nodeArgs], {
    stdio: ['ignore', opts.stdout, 'pipe', ...(opts.ipc === true ? (['ipc'] as const) : [])],
    ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
    ...(opts.env === undefined ? {} : { env: { ...process.env, ...opts.env } }),
  });
  let log = '';
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${opts.name}: could not spawn taskset`);
  live.set(pid, child);
  void exited.then(() => live.delete(pid));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`${opts.name}: not ready after ${opts.timeoutMs ?? 20_000} ms\n${log}`)),
      opts.timeoutMs ?? 20_000,
    );
    const onText = (chunk: Buffer): void => {
      log = (log + chunk.toString('utf8')).slice(-8_192);
      const m = opts.ready.exec(log);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1] ?? '');
      }
    };
    child.stdout?.on('data', onText);
    child.stderr?.on('data', onText);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${opts.name} exited (${code}) before it was ready:\n${log}`));
    });
  });
  const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  if (comm !== 'node') throw new Error(`${opts.name}: pid ${pid} is "${comm}", not node`);

  return {
    name: opts.name,
    pid,
    child,
    url,
    tail: () => log,
    stop: async (graceMs = 5_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      signal(pid, 'SIGTERM');
      const killer = setTimeout(() => signal(pid, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(killer);
    },
  };
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/** Kills every child still running, by pid (synchronous: safe in an 'exit' handler). */
export function killAll(): void {
  for (const pid of live.keys()) signal(pid, 'SIGKILL');
  live.clear();
}

/** Children die with the driver, however it ends; `onExit` runs first (temp files). */
export function installCleanup(onExit: () => void): void {
  let done = false;
  const cleanup = (): void => {
    if (done) return;
    done = true;
    killAll();
    onExit();
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n[bench] ${sig}: stopping children\n`);
      cleanup();
      process.exit(130);
    });
  }
}
