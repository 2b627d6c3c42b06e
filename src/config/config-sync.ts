import type { ConfigChannel, PublishedConfig } from '../contracts/config-channel.js';
import type { Logger } from '../contracts/logger.js';
import { configDigest } from './load.js';
import type { ReloadOutcome } from './reloader.js';

/** What `/readyz` shows of a replica's place in its group (#17). */
export type ConfigSyncStatus = {
  readonly group: string;
  readonly connected: boolean;
  /** The group's desired config digest, once known. */
  readonly desired?: string;
  /** True when this replica serves the desired config. */
  readonly in_sync: boolean;
  /** The last desired config this replica refused, and why. */
  readonly refused?: { readonly digest: string; readonly reason: string };
};

export interface ConfigSyncOptions {
  readonly channel: ConfigChannel;
  readonly group: string;
  /** This replica's name in what it publishes (host and pid). */
  readonly replica: string;
  /** The digest this replica serves now. */
  readonly current: () => string;
  /** The text of the config this replica serves, if its file still holds it. */
  readonly currentText: () => Promise<{ digest: string; text: string } | undefined>;
  /** Validates and applies a published config as a reload (trigger `sync`). */
  readonly adopt: (config: PublishedConfig) => Promise<ReloadOutcome>;
  readonly wall: () => number;
  readonly log: Logger;
}

/**
 * Keeps a replica on its group's desired config. A change applied here (file change, SIGHUP)
 * is published; a change published elsewhere is validated here like a reload and applied, or
 * refused with the last good config still serving. At start, a replica whose file was never
 * published brings a new config (a rollout) and publishes it; one whose file is old (a restart)
 * takes the group's.
 */
export class ConfigSync {
  private desired: PublishedConfig | undefined;
  private refused: { digest: string; reason: string } | undefined;
  /** A local change not yet published (the channel was away); the start file at first. */
  private pending: { digest: string; startup: boolean } | undefined;
  private adopting: Promise<void> = Promise.resolve();

  constructor(private readonly o: ConfigSyncOptions) {}

  /** Once the gateway serves: its start config is what it brings to the group. */
  start(): void {
    this.pending = { digest: this.o.current(), startup: true };
    this.o.channel.start({
      connected: () => this.flush(),
      desired: (c) => this.onDesired(c),
    });
  }

  /** The reloader's outcome hook: publishes what this replica applied itself. */
  outcome(outcome: ReloadOutcome): void {
    if (outcome.trigger === 'sync' || outcome.result !== 'applied') return;
    this.pending = { digest: outcome.digest, startup: false };
    void this.flush();
  }

  close(): Promise<void> {
    return this.o.channel.close();
  }

  status(): ConfigSyncStatus {
    const desired = this.desired?.digest;
    return {
      group: this.o.group,
      connected: this.o.channel.connected,
      ...(desired === undefined ? {} : { desired }),
      in_sync: desired === undefined || desired === this.o.current(),
      ...(this.refused === undefined || this.refused.digest !== desired
        ? {}
        : { refused: this.refused }),
    };
  }

  private async flush(): Promise<void> {
    const p = this.pending;
    if (p === undefined || !this.o.channel.connected) return;
    try {
      if (p.startup && (await this.o.channel.published(p.digest))) {
        this.pending = undefined; // an old file: the group's desired config wins
        return;
      }
      const now = await this.o.currentText();
      // The file moved on since: its own reload publishes it.
      if (now === undefined || now.digest !== p.digest || now.digest !== this.o.current()) return;
      await this.o.channel.publish({
        digest: now.digest,
        text: now.text,
        origin: this.o.replica,
        at: this.o.wall(),
      });
      if (this.pending === p) this.pending = undefined;
      this.o.log.info({ digest: now.digest, group: this.o.group }, 'config published to the group');
    } catch (err) {
      this.o.log.warn(
        { err: err instanceof Error ? err.message : String(err), group: this.o.group },
        'config not published yet; retrying when the channel is back',
      );
    }
  }

  private onDesired(c: PublishedConfig): void {
    this.desired = c;
    // One adoption at a time, in the order the channel delivered them.
    this.adopting = this.adopting.then(async () => {
      if (this.desired !== c || c.digest === this.o.current()) return;
      // A local change waiting to be published is newer than what the group had.
      if (this.pending !== undefined && !this.pending.startup) return;
      const outcome: ReloadOutcome =
        configDigest(c.text) === c.digest
          ? await this.o.adopt(c)
          : {
              trigger: 'sync',
              previous: this.o.current(),
              result: 'rejected',
              reason: 'the published text does not have the published digest',
              digest: c.digest,
            };
      if (outcome.result === 'rejected') {
        this.refused = { digest: c.digest, reason: outcome.reason };
        this.o.log.error(
          { group: this.o.group, digest: c.digest, origin: c.origin, keeping: this.o.current() },
          'refused the group config; the last good config keeps serving',
        );
      }
    });
  }
}
