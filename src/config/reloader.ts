import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from '../contracts/logger.js';
import { loadConfigFile, type ConfigSnapshot } from './load.js';

export type ReloadOutcome =
  | { readonly result: 'applied'; readonly digest: string }
  | { readonly result: 'unchanged'; readonly digest: string }
  | { readonly result: 'rejected'; readonly reason: string };

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
  reload(trigger: 'file' | 'signal' | 'api'): Promise<ReloadOutcome> {
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

  private async doReload(trigger: string): Promise<ReloadOutcome> {
    let outcome: ReloadOutcome;
    try {
      const next = await this.load(this.current.source);
      if (next.digest === this.current.digest) {
        outcome = { result: 'unchanged', digest: next.digest };
      } else {
        await this.apply(next, this.current);
        this.current = next;
        outcome = { result: 'applied', digest: next.digest };
        this.log.info({ trigger, digest: next.digest }, 'config reloaded');
      }
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      outcome = { result: 'rejected', reason };
      this.log.error(
        { trigger, reason, keeping: this.current.digest },
        'config reload rejected; the last good config keeps serving',
      );
    }
    this.onOutcome(outcome);
    return outcome;
  }
}
