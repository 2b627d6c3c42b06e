#!/usr/bin/env -S node --max-semi-space-size=8 --no-wasm-dynamic-tiering --no-wasm-tier-up
import { parseArgs } from 'node:util';
import { generateKey, fingerprintOfHash, hashKey } from '../core/api-key.js';
import { ConfigError, loadConfigFile, resolveSecret } from '../config/load.js';
import { DEFAULTS } from '../config/defaults.js';
import { applyHeapGrowingPercent } from '../core/heap.js';
import { startGateway } from '../main.js';
import { INDEX_HELP, INDEX_USAGE, runIndex } from './index-commands.js';
import { MODELS_HELP, MODELS_USAGE, runBuildDemo, runQuantize } from './models-commands.js';
import {
  REGISTRY_HELP,
  REGISTRY_USAGE,
  runRegistryCommand,
  runSigningCreate,
} from './registry-commands.js';
import { startSimulator } from '../simulator/upstream-simulator.js';

const USAGE = `switchyard — one front door for every model call

Usage:
  switchyard serve --config FILE [--port N] [--host H] [--no-watch] [--demo-upstream PORT]
  switchyard config check FILE
  switchyard keys create --tenant T --config FILE [--id ID]
  switchyard simulate [--port N] [--latency-ms N] [--token-delay-ms N]
${MODELS_USAGE}${REGISTRY_USAGE}${INDEX_USAGE}
serve            Serve the OpenAI, KServe v2 and admin APIs for the config.
                 The config reloads on file change (unless --no-watch) and
                 on SIGHUP; an invalid new config is refused, the old kept.
                 --demo-upstream starts the bundled SIMULATED model upstream
                 on that port first (demos and benchmarks only).
config check     Validate a config file without serving; exit 1 if invalid.
keys create      Print a new API key for a tenant and its config entry.
simulate         Run the SIMULATED model upstream alone.
${MODELS_HELP}${REGISTRY_HELP}${INDEX_HELP}`;

function fail(message: string): never {
  process.stderr.write(`switchyard: ${message}\n`);
  process.exit(2);
}

function int(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`${flag} must be a whole number (0-65535)`);
  return n;
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'demo-upstream': { type: 'string' },
      'no-watch': { type: 'boolean' },
    },
  });
  if (values.config === undefined) fail('serve needs --config FILE');
  // Before the gateway loads: V8 sizes the old generation's next limit at every full GC, and
  // the ones during start would otherwise set a loose first limit under load.
  applyHeapGrowingPercent(DEFAULTS.server.heap_growing_percent);
  const demoPort = int(values['demo-upstream'], '--demo-upstream');
  if (demoPort !== undefined) {
    const sim = await startSimulator({ port: demoPort });
    process.stderr.write(
      `switchyard: SIMULATED model upstream on ${sim.url} (canned answers, not a real model)\n`,
    );
  }
  const port = int(values.port, '--port');
  const gateway = await startGateway({
    configPath: values.config,
    watch: values['no-watch'] !== true,
    ...(port === undefined ? {} : { port }),
    ...(values.host === undefined ? {} : { host: values.host }),
  });
  const heap = gateway.runtime().snapshot.config.server.heap_growing_percent;
  if (heap !== DEFAULTS.server.heap_growing_percent) applyHeapGrowingPercent(heap);
  process.stderr.write(`switchyard: listening on ${gateway.url}\n`);
  process.on('SIGHUP', () => void gateway.reload('signal'));
  const stop = (signal: string): void => {
    gateway.logger.info({ signal }, 'shutting down');
    void gateway.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

async function configCheck(args: string[]): Promise<void> {
  const file = args[0];
  if (file === undefined) fail('config check needs a FILE');
  try {
    const snap = await loadConfigFile(file);
    const models = Object.keys(snap.config.models).length;
    const tenants = Object.keys(snap.config.tenants).length;
    process.stdout.write(
      `${snap.source}: valid (${models} models, ${tenants} tenants, digest ${snap.digest})\n`,
    );
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

async function keysCreate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { tenant: { type: 'string' }, config: { type: 'string' }, id: { type: 'string' } },
  });
  if (values.tenant === undefined) fail('keys create needs --tenant T');
  if (values.config === undefined) fail('keys create needs --config FILE (for the server secret)');
  let snap;
  try {
    snap = await loadConfigFile(values.config);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const ref = snap.config.auth.secret;
  if (ref === undefined) fail('the config has no auth.secret to key the hash with');
  const secret = resolveSecret(ref, snap.dir);
  const key = generateKey('sk');
  const hash = hashKey(key, secret);
  const id = values.id ?? `key-${new Date().toISOString().slice(0, 10)}`;
  process.stdout.write(
    `API key (shown once; store it now):\n  ${key}\n\n` +
      `Add under tenants.${values.tenant}.keys in ${snap.source}:\n` +
      `  - { id: ${id}, hash: "${hash}" }\n\n` +
      `Logs name this key ${fingerprintOfHash(hash)}.\n`,
  );
}

async function simulate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string' },
      'latency-ms': { type: 'string' },
      'token-delay-ms': { type: 'string' },
      host: { type: 'string' },
    },
  });
  const sim = await startSimulator({
    port: int(values.port, '--port') ?? 9100,
    latencyMs: Number(values['latency-ms'] ?? 0),
    tokenDelayMs: Number(values['token-delay-ms'] ?? 0),
    ...(values.host === undefined ? {} : { host: values.host }),
  });
  process.stderr.write(
    `switchyard: SIMULATED model upstream on ${sim.url} (canned answers, not a real model)\n`,
  );
}

async function main(argv: string[]): Promise<void> {
  const [cmd, sub, ...rest] = argv;
  if (cmd === 'serve') return serve(argv.slice(1));
  if (cmd === 'config' && sub === 'check') return configCheck(rest);
  if (cmd === 'keys' && sub === 'create') return keysCreate(rest);
  if (cmd === 'simulate') return simulate(argv.slice(1));
  if (cmd === 'models' && sub === 'build-demo') return runBuildDemo(rest);
  if (cmd === 'models' && sub === 'quantize') return runQuantize(rest);
  // Model registry (#6).
  if (
    cmd === 'models' &&
    sub !== undefined &&
    ['push', 'sign', 'list', 'promote', 'retire'].includes(sub)
  )
    return runRegistryCommand(sub, rest);
  if (cmd === 'keys' && sub === 'signing-create') return runSigningCreate(rest);
  // Vector shards (#7).
  if (cmd === 'index') return runIndex(argv.slice(1));
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  fail(`unknown command "${argv.join(' ')}"\n\n${USAGE}`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(
    `switchyard: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
