import { Command, CommanderError, Help, type Option } from 'commander';
import { ConfigError } from '../config/load.js';
import { isSwitchyardError } from '../core/errors.js';
import { AuditQueryError } from '../observability/audit-query.js';
import { CostQueryError } from '../observability/cost-query.js';
import { registerAuditCommands } from './audit-commands.js';
import { registerRequestsCommands } from './requests-commands.js';
import { registerCostsCommands } from './costs-commands.js';
import { registerGatewayCommands } from './gateway-commands.js';
import { registerIndexCommands } from './index-commands.js';
import { CliUsageError, CliUserError, processIo, type CliIo } from './io.js';
import { registerModelsCommands } from './models-commands.js';
import { registerRegistryCommands } from './registry-commands.js';
import { registerReplayCommands } from './replay-commands.js';

/** The command groups, in the order help lists them (after `serve` and `simulate`). */
const GROUPS = {
  config: 'Check configuration files.',
  keys: 'Make API keys and model-signing keys.',
  models: 'Build, quantize and release models (the model registry).',
  index: 'Build, inspect and split vector shards.',
  audit: 'Read the audit trail of admin changes.',
  requests: 'Read the inference log: requests, their routes and model calls.',
} as const;
export type GroupName = keyof typeof GROUPS;

/** What every command module gets to register its commands. */
export interface CommandKit {
  readonly io: CliIo;
  /** The top-level command, for commands that are not in a group. */
  readonly program: Command;
  /** A group such as `models`, made on first use. */
  group(name: GroupName): Command;
  /** Wraps an action: the number it resolves with (0 when none) becomes the exit code. */
  action<A extends unknown[]>(
    fn: (...args: A) => Promise<number | void> | number | void,
  ): (...args: A) => Promise<void>;
}

/**
 * The `switchyard` command tree (commander). Exported so a test can walk every command; `done`
 * receives the exit code of the action that ran. Usage and user errors never exit the process
 * here: `runCli` turns them into one line and an exit code.
 */
export function buildProgram(
  io: CliIo = processIo,
  done: (code: number) => void = () => {},
): Command {
  const program = new Command('switchyard')
    .description('One front door for every model call: an inference gateway and control plane.')
    .usage('<command> [options]')
    .exitOverride()
    // Errors are printed by runCli as one line; help goes to stdout.
    .configureOutput({ writeOut: io.out, writeErr: () => undefined, outputError: () => undefined })
    .showSuggestionAfterError(true)
    .helpOption('-h, --help', 'show help for the command')
    .configureHelp({
      // Commander does not say which options are required; the help should.
      optionDescription(option: Option): string {
        const text = Help.prototype.optionDescription.call(this, option);
        return option.mandatory ? `${text} (required)` : text;
      },
    });
  const groups = new Map<GroupName, Command>();
  const kit: CommandKit = {
    io,
    program,
    // Made with .command(), so a group and its commands inherit the settings above.
    group: (name) => {
      let g = groups.get(name);
      if (g === undefined)
        groups.set(
          name,
          (g = program.command(name).description(GROUPS[name]).usage('<command> [options]')),
        );
      return g;
    },
    action:
      (fn) =>
      async (...args) => {
        done((await fn(...args)) ?? 0);
      },
  };
  registerGatewayCommands(kit);
  registerModelsCommands(kit);
  registerRegistryCommands(kit);
  registerIndexCommands(kit);
  registerAuditCommands(kit);
  registerRequestsCommands(kit);
  registerReplayCommands(kit);
  registerCostsCommands(kit);
  return program;
}

/** The command a command line names (as far as it names one), such as `switchyard models push`. */
export function commandOf(program: Command, argv: readonly string[]): Command {
  let cmd = program;
  for (const arg of argv) {
    if (arg.startsWith('-')) continue;
    const sub = cmd.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (sub === undefined) break;
    cmd = sub;
  }
  return cmd;
}

const pathOf = (cmd: Command): string => {
  const names: string[] = [];
  for (let c: Command | null = cmd; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
};

/** System errors that are the user's to fix (a missing file, a port in use), not bugs. */
const USER_ERRNO = new Set([
  'ENOENT',
  'EACCES',
  'EPERM',
  'EEXIST',
  'EISDIR',
  'ENOTDIR',
  'ENOTEMPTY',
  'EROFS',
  'ENOSPC',
  'EADDRINUSE',
  'EADDRNOTAVAIL',
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  // better-sqlite3: a state or audit file that cannot be opened or is not a database.
  'SQLITE_CANTOPEN',
  'SQLITE_READONLY',
  'SQLITE_NOTADB',
  'SQLITE_CORRUPT',
]);

const isUserErrno = (err: unknown): err is Error =>
  err instanceof Error && USER_ERRNO.has(String((err as NodeJS.ErrnoException).code));

/**
 * Runs a command line and resolves with its exit code: 0 done; 2 a usage error (one line and a
 * hint to use --help); 1 a user error (one line, no stack) or a bug (the stack, so it can be
 * reported). A command that keeps running (`serve`) resolves 0 once it has started.
 */
export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => (code = c));
  if (argv.length === 0) {
    io.out(program.helpInformation());
    return 0;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (err) {
    const cmd = commandOf(program, argv);
    const usage = (message: string): number => {
      io.err(`switchyard: ${message} (see '${pathOf(cmd)} --help')\n`);
      return 2;
    };
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      if (err.code === 'commander.help')
        return usage(
          `'${pathOf(cmd)}' needs a command: ${cmd.commands.map((c) => c.name()).join(', ')}`,
        );
      return usage(err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' '));
    }
    if (
      err instanceof CliUsageError ||
      err instanceof AuditQueryError ||
      err instanceof CostQueryError
    )
      return usage(err.message);
    if (err instanceof ConfigError) {
      // One problem, one line; an invalid config lists every problem with its path, one line
      // each (a YAML error's code frame is left out: its first line names line and column).
      const problems = err.problems.map((p) => p.split('\n')[0]!.replace(/:$/, ''));
      io.err(
        problems.length === 1
          ? `switchyard: ${err.source}: ${problems[0]}\n`
          : `switchyard: ${err.source}: invalid configuration:\n  - ${problems.join('\n  - ')}\n`,
      );
      return 1;
    }
    if (isSwitchyardError(err)) {
      io.err(`switchyard: ${err.code}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof CliUserError || isUserErrno(err)) {
      io.err(`switchyard: ${err.message}\n`);
      return 1;
    }
    // Anything else is a bug: the stack is what a report needs.
    io.err(
      `switchyard: internal error (please report it): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    return 1;
  }
}
