import type { Logger as Pino } from 'pino';
import type { ClusterPeer } from '../contracts/cluster.js';
import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import type { Metrics } from '../observability/metrics.js';

/**
 * What every wiring module gets: the process-wide clock, random source, logger and metrics.
 * Each capability keeps its own long-lived parts (connections, breakers, loaded models) in the
 * object its `open` returns, so they outlive config reloads without the composition root
 * growing a field per feature.
 */
export interface WiringDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Pino;
  readonly metrics: Metrics;
  /** The other worker processes of `serve --workers N` (#17); absent in a single process. */
  readonly cluster?: ClusterPeer;
}
