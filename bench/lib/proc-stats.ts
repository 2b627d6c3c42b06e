import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** CPU time and memory of a process, from /proc (Linux). */

const TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** User + system CPU time of every thread of `pid` so far, in ms (resolution 1/CLK_TCK s). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the ")" that closes the command name: state is [0], utime [11], stime [12].
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S;
}

/**
 * CPU time of `pid`'s main thread (the event loop: thread id = pid) and of all its other threads
 * together (workers, libuv's pool, V8's GC and compiler threads), in ms, from each thread's
 * /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU). Threads that ended are not counted.
 */
export function threadCpuMs(pid: number): { readonly main: number; readonly others: number } {
  let main = 0;
  let others = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let ns: number;
    try {
      ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      continue; // the thread ended between the listing and the read
    }
    if (Number(tid) === pid) main += ns / 1e6;
    else others += ns / 1e6;
  }
  return { main, others };
}

/** Resident set size of `pid` in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Samples a process's RSS on a timer; keeps every sample with its time. */
export class RssSampler {
  readonly samples: { readonly atS: number; readonly bytes: number }[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly t0 = Date.now();

  constructor(
    private readonly pid: number,
    intervalMs: number,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }

  get max(): number {
    return this.samples.reduce((m, s) => Math.max(m, s.bytes), 0);
  }

  private sample(): void {
    try {
      this.samples.push({ atS: (Date.now() - this.t0) / 1000, bytes: rssBytes(this.pid) });
    } catch {
      // The process is gone; the caller finds out from its own checks.
    }
  }
}

export const MB = 1024 * 1024;
