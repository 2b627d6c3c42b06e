import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { ConfigSync } from '../config/config-sync.js';
import { ConfigError, configDigest, parseConfig, type ConfigSnapshot } from '../config/load.js';
import type { ConfigReloader } from '../config/reloader.js';
import type { WiringDeps } from './shared.js';
import { validateConfig } from './validate-config.js';

/**
 * Config propagation between replicas (#17 item 4), when `config_sync` is configured: opens the
 * group's NATS channel and keeps this replica on the group's desired config. A published config
 * is checked by the same validation as `serve` and every reload (#14), against this replica's
 * own secrets and files. Changing `config_sync` itself takes a restart. The NATS client loads
 * only then.
 */
export async function openConfigSync(
  initial: ConfigSnapshot,
  deps: WiringDeps,
  reloader: () => ConfigReloader,
): Promise<ConfigSync | undefined> {
  const settings = initial.config.config_sync;
  if (settings === undefined) return undefined;
  const { NatsConfigChannel } = await import('../state/nats-config-channel.js');
  const replica = `${hostname()}/${process.pid}`;
  const channel = new NatsConfigChannel({
    url: settings.nats,
    group: settings.group,
    name: `switchyard ${replica}`,
    logger: deps.logger,
  });
  const sync = new ConfigSync({
    channel,
    group: settings.group,
    replica,
    current: () => reloader().snapshot.digest,
    currentText: async () => {
      const text = await readFile(reloader().snapshot.source, 'utf8').catch(() => undefined);
      return text === undefined ? undefined : { digest: configDigest(text), text };
    },
    adopt: (c) =>
      reloader().adopt(async (current) => {
        // Parsed as if it were this replica's file: relative secret files resolve beside it.
        const next = parseConfig(c.text, current.source, current.dir);
        const problems = await validateConfig(next);
        if (problems.length > 0) throw new ConfigError(current.source, problems);
        return next;
      }, c.digest),
    wall: () => deps.clock.wall(),
    log: deps.logger,
  });
  return sync;
}
