import { userInfo } from 'node:os';

/** A command's streams: the process's, or captured ones in tests. */
export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Whether stderr is a terminal: progress bars redraw in place there, else print plain lines. */
  readonly tty: boolean;
  /** The terminal stream progress bars draw on (when `tty`). */
  readonly errStream?: NodeJS.WriteStream;
}

export const processIo: CliIo = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  tty: process.stderr.isTTY,
  errStream: process.stderr,
};

/** A usage problem (a bad or missing argument): one line, a hint to use --help, exit 2. */
export class CliUsageError extends Error {
  override readonly name = 'CliUsageError';
}

/** A user error (bad config, missing file, unknown model): one line, no stack, exit 1. */
export class CliUserError extends Error {
  override readonly name = 'CliUserError';
}

/** Rows as aligned columns: the first left-aligned, the rest right-aligned (or all left). */
export function table(
  rows: readonly (readonly string[])[],
  align: 'numbers' | 'left' = 'numbers',
): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) =>
          c === 0 || align === 'left' ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Who runs the CLI, as the audit trail names them: `cli:<user>`. */
export function cliActor(): string {
  let name: string | undefined;
  try {
    name = userInfo().username;
  } catch {
    // No passwd entry (some containers): fall back to the environment.
  }
  return `cli:${name ?? process.env['USER'] ?? 'unknown'}`;
}
