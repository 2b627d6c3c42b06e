import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { buildProgram } from '../../src/cli/program.js';

/**
 * The CLI as users run it (#14): the built bin, a child process per command line. `npm test`
 * builds dist/ before the tests run.
 */
const BIN = join(import.meta.dirname, '../../dist/cli/index.js');
const dir = mkdtempSync(join(tmpdir(), 'sy-cli-help-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const exec = promisify(execFile);
async function sy(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await exec(process.execPath, [BIN, ...args], { cwd: dir, timeout: 30_000 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

/** A stack frame line, as Node prints them. */
const STACK = /\n\s+at .+:\d+:\d+/;

/** Every command of the tree, the program itself included, as the words that name it. */
function commandPaths(cmd: Command, path: string[] = []): string[][] {
  return [path, ...cmd.commands.flatMap((c) => commandPaths(c, [...path, c.name()]))];
}

const paths = commandPaths(buildProgram());

describe('switchyard --help', () => {
  it('covers every command the issue names, and every group has subcommands', () => {
    const names = paths.map((p) => p.join(' '));
    for (const c of [
      'serve',
      'keys create',
      'models list',
      'models push',
      'simulate',
      'audit list',
      'index build',
      'models build-demo',
      'requests list',
      'replay',
    ])
      expect(names).toContain(c);
    expect(paths.length).toBeGreaterThan(20);
  });

  it.concurrent.each(paths.map((p) => [p.join(' ') || '(no command)', p] as const))(
    'prints usage for %s and exits 0',
    async (_name, path) => {
      const r = await sy(...path, '--help');
      expect(r.code, r.err).toBe(0);
      expect(r.err).toBe('');
      expect(r.out).toMatch(new RegExp(`^Usage: ${['switchyard', ...path].join(' ')} `));
      expect(r.out).not.toMatch(STACK);
      // Every command says what it does: a description line after the usage line.
      expect(r.out.split('\n')[2]?.trim().length).toBeGreaterThan(10);
      if (path.length > 0 && !r.out.includes('Commands:')) expect(r.out).toContain('Options:');
    },
  );
});

/** One line on stderr that names the problem and points at the command's --help. */
const usageLine = (problem: string, command: string) =>
  new RegExp(
    `^switchyard: ${problem}[^\\n]* \\(see '${command.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} --help'\\)\\n$`,
  );

describe('usage errors: one line, exit 2', () => {
  it.concurrent.each([
    [['frobnicate'], "unknown command 'frobnicate'", 'switchyard'],
    [['models', 'frob'], "unknown command 'frob'", 'switchyard models'],
    [['models'], "'switchyard models' needs a command: build-demo", 'switchyard models'],
    [['serve'], "required option '-c, --config <file>' not specified", 'switchyard serve'],
    [
      ['keys', 'create', '--config', 'x.yaml'],
      "required option '--tenant <tenant>' not specified",
      'switchyard keys create',
    ],
    [
      ['serve', '--config', 'x.yaml', '--port', 'abc'],
      "option '-p, --port <n>' argument 'abc' is invalid",
      'switchyard serve',
    ],
    [
      ['serve', '--config', 'x.yaml', '--workers', '0'],
      "option '--workers <n|auto>' argument '0' is invalid. It must be a whole number from 1 to 1024, or auto.",
      'switchyard serve',
    ],
    [
      ['simulate', '--port', '70000'],
      "option '-p, --port <n>' argument '70000'",
      'switchyard simulate',
    ],
    [
      ['models', 'build-demo', '--seed', '1.5'],
      "option '--seed <n>' argument '1.5' is invalid",
      'switchyard models build-demo',
    ],
    [
      ['audit', 'list', '--config', 'x.yaml', '--limit', '0'],
      'limit must be a whole number from 1 to 1000',
      'switchyard audit list',
    ],
    [
      ['audit', 'list', '--config', 'x.yaml', '--since', 'yesterday'],
      'since must be epoch milliseconds or an ISO 8601 date',
      'switchyard audit list',
    ],
    [['config', 'check'], "missing required argument 'file'", 'switchyard config check'],
    [['config', 'check', 'a.yaml', '--frob'], "unknown option '--frob'", 'switchyard config check'],
  ] as const)('%j', async (args, problem, command) => {
    const r = await sy(...args);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(usageLine(problem, command));
    expect(r.out).toBe('');
  });
});

describe('user errors: one line, exit 1, no stack', () => {
  writeFileSync(join(dir, 'secret.txt'), 'a-test-secret-of-enough-length-0123456789');
  writeFileSync(
    join(dir, 'invalid.yaml'),
    'models:\n  m: { backend: openai, url: "http://x/v1", colour: red }\n',
  );
  writeFileSync(join(dir, 'not-yaml.yaml'), 'models: [unclosed\n');
  writeFileSync(join(dir, 'stateless.yaml'), stringify({ models: {} }));
  writeFileSync(
    join(dir, 'stateful.yaml'),
    stringify({ state: { sqlite: 'state/registry.db' }, models: {} }),
  );

  it.concurrent.each([
    [['config', 'check', 'missing.yaml'], /missing\.yaml: cannot read the file: ENOENT/],
    [['serve', '--config', 'missing.yaml'], /missing\.yaml: cannot read the file: ENOENT/],
    [['serve', '--config', 'invalid.yaml', '--port', '0'], /models\.m\.colour: unknown key/],
    [['config', 'check', 'not-yaml.yaml'], /not-yaml\.yaml: /],
    [['audit', 'list', '--config', 'missing.yaml'], /missing\.yaml: cannot read the file/],
    [['models', 'list', '--config', 'stateless.yaml'], /the registry needs a "state:" section/],
    [['keys', 'create', '--tenant', 'acme', '--config', 'stateless.yaml'], /has no auth\.secret/],
    [
      [
        'models',
        'promote',
        '--config',
        'stateful.yaml',
        '--model',
        'nope',
        '--version',
        '1',
        '--stage',
        'canary',
        '--reason',
        'try',
      ],
      /SY_ERR_REGISTRY_NOT_FOUND: .*nope@1/,
    ],
    [
      [
        'models',
        'push',
        '--config',
        'stateful.yaml',
        '--model',
        'm',
        '--version',
        '1',
        '--artifact',
        'nothing-here',
      ],
      /nothing-here/,
    ],
  ] as const)('%j', async (args, problem) => {
    const r = await sy(...args);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/^switchyard: /);
    expect(r.err).toMatch(problem);
    expect(r.err).not.toMatch(STACK);
    expect(r.err).not.toContain('internal error');
    expect(r.err.trimEnd().split('\n')).toHaveLength(1);
  });
});
