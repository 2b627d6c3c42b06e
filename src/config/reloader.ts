import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { AuditEntry } from '../contracts/audit.js';
import type { Logger } from '../contracts/logger.js';
import { configDigest, loadConfigFile, type ConfigSnapshot } from './load.js';

/** `sync`: a config another replica of the group published (#17). */
export type ReloadTrigger = 'file' | 'signal' | 'api' | 'sync';

/** What a reload did; `previous` is the digest that was serving before it. */
export type ReloadOutcome = { readonly trigger: ReloadTrigger; readonly previous: string } & (
  | { readonly result: 'applied'; readonly digest: string }
  | { readonly result: 'unchanged'; readonly digest: string }
  /** `digest` is the refused file's, when it could be read. */
  | { readonly result: 'rejected'; readonly reason: string; readonly digest?: string }
);

/** The audit entry of a reload that changed something or was refused (#14); none when unchanged. */
export function reloadAuditEntry(
  outcome: ReloadOutcome,
  source: string,
  at: number,
): AuditEntry | undefined {
  if (outcome.result === 'unchanged') return undefined;
  const applied = outcome.result === 'applied';
  return {
    at,
    actor: `config:${outcome.trigger}`,
    action: applied ? 'config.reload.applied' : 'config.reload.rejected',
    target: source,
    reason: applied ? `reloaded on ${outcome.trigger}` : outcome.reason.slice(0, 2_000),
    before: { digest: outcome.previous },
    // A refused file changes nothing: the previous config keeps serving.
    after: { digest: applied ? outcome.digest : outcome.previous },
    ...(applied || outcome.digest === undefined
      ? {}
      : { detail: { refused_digest: outcome.digest } }),
  };
}

/**
 * Watches the config file (and answers SIGHUP through `reload()`). A new file is loaded and
 * validated by `load` (the gateway passes the one validation `serve` and `config check` run,
 * #14) and handed to `apply`, which builds everything it needs before swapping one reference;
 * when loading, validation or `apply` fails, the last good config keeps serving and the log
 * says why.
 */
export class ConfigReloader {
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private running: Promise<ReloadOutcome> | undefined;
  private again = false;
  private current: ConfigSnapshot;

  constructor(
    initial: ConfigSnapshot,
    private readonly apply: (next: ConfigSnapshot, previous: ConfigSnapshot) => Promise<void>,
    private readonly log: Logger,
    private readonly onOutcome: (outcome: ReloadOutcome) => void = () => {},
    private readonly load: (path: string) => Promise<ConfigSnapshot> = loadConfigFile,
  ) {
    this.current = initial;
  }

  get snapshot(): ConfigSnapshot {
    return this.current;
  }

  /** Watches the directory, not the file: editors and `mv` replace the file's inode. */
  start(debounceMs = 100): void {
    const file = resolve(this.current.source);
    this.watcher = watch(dirname(file), (_event, changed) => {
      if (changed !== null && changed !== basename(file)) return;
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.reload('file'), debounceMs);
    });
    this.watcher.unref();
  }

  stop(): void {
    clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** Reloads now; concurrent calls coalesce into one more reload after the running one. */
  reload(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.running = this.doReload(trigger).finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        void this.reload(trigger);
      }
    });
    return this.running;
  }

  /**
   * Validates and applies a config that did not come from the file (a group's published one,
   * #17) through the same path as a reload: after any running reload, and refused the same way.
   */
  async adopt(
    load: (current: ConfigSnapshot) => Promise<ConfigSnapshot>,
    digest: string,
  ): Promise<ReloadOutcome> {
    while (this.running !== undefined) await this.running;
    this.running = this.doReload('sync', () => load(this.current), digest).finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        void this.reload('file');
      }
    });
    return this.running;
  }

  private async doReload(
    trigger: ReloadTrigger,
    load: () => Promise<ConfigSnapshot> = () => this.load(this.current.source),
    digest?: string,
  ): Promise<ReloadOutcome> {
    let outcome: ReloadOutcome;
    const previous = this.current.digest;
    try {
      const next = await load();
      if (next.digest === this.current.digest) {
        outcome = { trigger, previous, result: 'unchanged', digest: next.digest };
      } else {
        await this.apply(next, this.current);
        this.current = next;
        outcome = { trigger, previous, result: 'applied', digest: next.digest };
        this.log.info({ trigger, digest: next.digest }, 'config reloaded');
      }
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      const refused =
        digest ?? (await readFile(this.current.source, 'utf8').then(configDigest, () => undefined));
      outcome = {
        trigger,
        previous,
        result: 'rejected',
        reason,
        ...(refused === undefined ? {} : { digest: refused }),
      };
      this.log.error(
        { trigger, reason, keeping: this.current.digest },
        'config reload rejected; the last good config keeps serving',
      );
    }
    this.onOutcome(outcome);
    return outcome;
  }
}
