import type { AuditEntry, AuditSink, StoredAuditEntry } from '../../src/contracts/audit.js';
import type { Logger } from '../../src/contracts/logger.js';
import type { AdmissionSettings } from '../../src/admission/admission-controller.js';
import type { ClassSpec, ConcurrencySpec, ModesSpec } from '../../src/admission/settings.js';
import { NORMAL_SWITCHES } from '../../src/admission/settings.js';

/** Settings for unit tests (the real defaults live in config/defaults.ts). */
export const TEST_CLASSES: Record<string, ClassSpec> = {
  interactive: {
    priority: 0,
    deadline_ms: 30_000,
    queue_timeout_ms: 60_000,
    shed_from: 5,
    shed_full: 8,
  },
  personalization: {
    priority: 1,
    deadline_ms: 30_000,
    queue_timeout_ms: 60_000,
    shed_from: 0.6,
    shed_full: 1,
  },
  background: {
    priority: 3,
    deadline_ms: 60_000,
    queue_timeout_ms: 60_000,
    shed_from: 0.2,
    shed_full: 0.6,
  },
  batch: {
    priority: 4,
    deadline_ms: 60_000,
    queue_timeout_ms: 60_000,
    shed_from: 0.1,
    shed_full: 0.4,
  },
};

export const TEST_CONCURRENCY: ConcurrencySpec = {
  algorithm: 'fixed',
  initial_limit: 1,
  min_limit: 1,
  max_limit: 100,
  max_queue: 10,
  target_queue_delay_ms: 50,
  probe_interval_ms: 60_000,
  smoothing: 0.2,
};

export const TEST_MODES: ModesSpec = {
  sample_ms: 60_000,
  enter_samples: 3,
  exit_samples: 5,
  min_hold_ms: 10_000,
  surge: {
    enter: { queue_delay_ms: 50 },
    exit: { queue_delay_ms: 10 },
    switches: { ...NORMAL_SWITCHES, shed_classes: ['batch'], deadline_scale: 0.5 },
  },
  emergency: {
    enter: { queue_delay_ms: 200 },
    exit: { queue_delay_ms: 50 },
    switches: { ...NORMAL_SWITCHES, shed_classes: ['batch', 'background'], deadline_scale: 0.25 },
  },
};

export function testSettings(over: Partial<AdmissionSettings> = {}): AdmissionSettings {
  return {
    classes: TEST_CLASSES,
    admission: {
      enabled: true,
      default_class: 'interactive',
      shed_retry_after_s: 2,
      concurrency: TEST_CONCURRENCY,
      overload: { loop_delay_ms: 0 },
      estimate: { output_tokens: 256 },
    },
    modes: TEST_MODES,
    tenants: {},
    ...over,
  };
}

/** A logger that drops everything. */
export const silentLogger: Logger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  child: () => silentLogger,
};

/** An AuditSink that keeps records in an array, newest last. */
export class ListAudit implements AuditSink {
  readonly entries: AuditEntry[] = [];
  record(entry: AuditEntry): void {
    this.entries.push(entry);
  }
  list(filter: { readonly action?: string } = {}): Promise<readonly StoredAuditEntry[]> {
    return Promise.resolve(
      this.entries
        .map((e, i) => ({ ...e, id: i + 1 }))
        .filter((e) => e.action.startsWith(filter.action ?? ''))
        .reverse(),
    );
  }
}
