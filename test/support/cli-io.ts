import type { CliIo } from '../../src/cli/io.js';

/** A CLI's streams captured in memory (not a terminal: progress prints line by line). */
export function captureIo(): CliIo & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    tty: false,
    stdout: () => out,
    stderr: () => err,
  };
}
