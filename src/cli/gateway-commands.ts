import { availableParallelism } from 'node:os';
import { generateKey, fingerprintOfHash, hashKey } from '../core/api-key.js';
import { loadConfigFile, resolveSecret } from '../config/load.js';
import { loadValidConfig } from '../wiring/validate-config.js';
import { DEFAULTS } from '../config/defaults.js';
import { applyHeapGrowingPercent } from '../core/heap.js';
import { openAuditTrail } from '../state/open-state.js';
import { portNumber, positiveNumber, workerCount } from './args.js';
import { cliActor, CliUserError } from './io.js';
import type { CommandKit } from './program.js';

interface ServeOptions {
  readonly config: string;
  readonly port?: number;
  readonly host?: string;
  readonly watch: boolean;
  readonly demoUpstream?: number;
  readonly workers?: number | 'auto';
}

async function startDemoUpstream(port: number): Promise<void> {
  const { startSimulator } = await import('../simulator/upstream-simulator.js');
  const sim = await startSimulator({ port });
  process.stderr.write(
    `switchyard: SIMULATED model upstream on ${sim.url} (canned answers, not a real model)\n`,
  );
}

/**
 * `serve --workers N` (#17): this process becomes the primary of N worker processes, each of
 * which runs this same command and serves the port the primary holds.
 */
async function servePrimary(o: ServeOptions, workers: number, drainMs: number): Promise<void> {
  if (o.demoUpstream !== undefined) await startDemoUpstream(o.demoUpstream);
  const { startPrimary } = await import('../cluster/primary.js');
  const say = (line: string): void => void process.stderr.write(`${line}\n`);
  const primary = await startPrimary({ workers, drainMs, say });
  say(`switchyard: listening on ${primary.url} (${workers} worker processes)`);
  process.on('SIGHUP', () => primary.signal('SIGHUP'));
  const stop = (signal: string): void => {
    say(`switchyard: ${signal}: draining ${workers} worker processes`);
    void primary.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

async function serve(o: ServeOptions): Promise<void> {
  const { default: cluster } = await import('node:cluster');
  if (cluster.isPrimary) {
    // Read for the count and the drain time only; every worker validates the config in full.
    const snap = await loadConfigFile(o.config);
    const wanted = o.workers ?? snap.config.server.workers;
    const n = wanted === 'auto' ? availableParallelism() : wanted;
    if (n > 1) return servePrimary(o, n, snap.config.server.drain_ms);
  }
  const { WorkerLink } = await import('../cluster/worker-link.js');
  const link = cluster.isWorker ? WorkerLink.fromEnv() : undefined;
  // Before the gateway loads: V8 sizes the old generation's next limit at every full GC, and
  // the ones during start would otherwise set a loose first limit under load.
  applyHeapGrowingPercent(DEFAULTS.server.heap_growing_percent);
  // Loaded only to serve: `--help` and the other commands start in a fraction of the time.
  const { startGateway } = await import('../main.js');
  if (o.demoUpstream !== undefined && link === undefined) await startDemoUpstream(o.demoUpstream);
  const gateway = await startGateway({
    configPath: o.config,
    watch: o.watch,
    ...(link === undefined ? {} : { cluster: link }),
    ...(o.port === undefined ? {} : { port: o.port }),
    ...(o.host === undefined ? {} : { host: o.host }),
  });
  const heap = gateway.runtime().snapshot.config.server.heap_growing_percent;
  if (heap !== DEFAULTS.server.heap_growing_percent) applyHeapGrowingPercent(heap);
  // A worker's primary announces the group once every worker listens.
  if (link === undefined) process.stderr.write(`switchyard: listening on ${gateway.url}\n`);
  process.on('SIGHUP', () => void gateway.reload('signal'));
  const stop = (signal: string): void => {
    gateway.logger.info({ signal }, 'shutting down');
    void gateway.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

interface KeysCreateOptions {
  readonly tenant: string;
  readonly config: string;
  readonly id?: string;
  readonly reason?: string;
}

/** Prints a new API key and its config entry, and records the creation in the audit trail. */
async function keysCreate(o: KeysCreateOptions, kit: CommandKit): Promise<void> {
  const snap = await loadConfigFile(o.config);
  const ref = snap.config.auth.secret;
  if (ref === undefined)
    throw new CliUserError(`${snap.source} has no auth.secret to key the hash with`);
  let secret: string;
  try {
    secret = resolveSecret(ref, snap.dir);
  } catch (err) {
    throw new CliUserError(err instanceof Error ? err.message : String(err));
  }
  const key = generateKey('sk');
  const hash = hashKey(key, secret);
  const id = o.id ?? `key-${new Date().toISOString().slice(0, 10)}`;
  const fingerprint = fingerprintOfHash(hash);
  // On record before the key is shown: a key nobody can account for is the thing to avoid.
  const { state, audit } = snap.config;
  const trail = await openAuditTrail({ state, audit, dir: snap.dir });
  try {
    await trail.log.appendAudit({
      at: Date.now(),
      actor: cliActor(),
      action: 'key.create',
      target: `${o.tenant}/${id}`,
      reason: o.reason ?? 'switchyard keys create',
      before: null,
      after: { tenant: o.tenant, id, fingerprint },
    });
  } finally {
    await trail.close();
  }
  kit.io.out(
    `API key (shown once; store it now):\n  ${key}\n\n` +
      `Add under tenants.${o.tenant}.keys in ${snap.source}:\n` +
      `  - { id: ${id}, hash: "${hash}" }\n\n` +
      `Logs name this key ${fingerprint}; the audit trail (${trail.where}) has its creation.\n`,
  );
}

interface SimulateOptions {
  readonly port: number;
  readonly host?: string;
  readonly latencyMs: number;
  readonly tokenDelayMs: number;
}

/** `serve`, `simulate`, `config check`, `keys create`. */
export function registerGatewayCommands(kit: CommandKit): void {
  const { program, io } = kit;
  program
    .command('serve')
    .description(
      'Serve the OpenAI, KServe v2 and admin APIs for a config. It reloads on file change ' +
        '(unless --no-watch) and on SIGHUP; an invalid new config is refused and the old one kept.',
    )
    .requiredOption('-c, --config <file>', 'the gateway config (YAML)')
    .option('-p, --port <n>', 'listen on this port (0: any free port)', portNumber)
    .option('--host <host>', 'listen on this address')
    .option('--no-watch', 'do not reload when the config file changes (SIGHUP still does)')
    .option(
      '--demo-upstream <port>',
      'first start the bundled SIMULATED model upstream on this port (demos and benchmarks only)',
      portNumber,
    )
    .option(
      '--workers <n|auto>',
      'worker processes serving the port (auto: one per core; default server.workers, 1). ' +
        'Quotas, consent, mode overrides and /metrics stay exact across them (docs/deploy.md)',
      workerCount,
    )
    .action(kit.action((o: ServeOptions) => serve(o)));

  program
    .command('simulate')
    .description('Run the SIMULATED model upstream alone (canned answers, not a real model).')
    .option('-p, --port <n>', 'listen on this port', portNumber, 9100)
    .option('--host <host>', 'listen on this address')
    .option('--latency-ms <ms>', 'delay before each answer', positiveNumber(true), 0)
    .option('--token-delay-ms <ms>', 'delay between streamed tokens', positiveNumber(true), 0)
    .action(
      kit.action(async (o: SimulateOptions) => {
        const { startSimulator } = await import('../simulator/upstream-simulator.js');
        const sim = await startSimulator({
          port: o.port,
          latencyMs: o.latencyMs,
          tokenDelayMs: o.tokenDelayMs,
          ...(o.host === undefined ? {} : { host: o.host }),
        });
        io.err(
          `switchyard: SIMULATED model upstream on ${sim.url} (canned answers, not a real model)\n`,
        );
      }),
    );

  kit
    .group('config')
    .command('check')
    .description('Validate a config file without serving; exit 1 when it is invalid.')
    .argument('<file>', 'the config file')
    .action(
      kit.action(async (file: string) => {
        // The same validation `serve` and reload run (#14): what serve refuses, check refuses.
        const snap = await loadValidConfig(file);
        const models = Object.keys(snap.config.models).length;
        const tenants = Object.keys(snap.config.tenants).length;
        io.out(
          `${snap.source}: valid (${models} models, ${tenants} tenants, digest ${snap.digest})\n`,
        );
      }),
    );

  kit
    .group('keys')
    .command('create')
    .description(
      "Print a new API key for a tenant and its config entry (the hash, keyed with the config's auth.secret); the creation is audited.",
    )
    .requiredOption('--tenant <tenant>', 'the tenant the key belongs to')
    .requiredOption(
      '-c, --config <file>',
      'the gateway config (for auth.secret and the audit trail)',
    )
    .option('--id <id>', 'the key id in the config (default key-<today>)')
    .option('--reason <text>', 'why the key is made (goes into the audit trail)')
    .action(kit.action((o: KeysCreateOptions) => keysCreate(o, kit)));
}
