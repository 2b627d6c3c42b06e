import { AggregatorRegistry } from 'prom-client';

/** A worker asks the primary for the metrics of every worker, summed. */
export const METRICS_TOPIC = 'metrics';
/** The primary asks each worker for its registry as JSON. */
export const METRICS_COLLECT_TOPIC = 'metrics.collect';

/**
 * The workers' metrics as one Prometheus text (#17): a scrape lands on any one worker, so it
 * answers for all. Counters and histograms are summed; gauges take the metric's `aggregator`
 * (sum unless the metric says otherwise, such as max for a state).
 */
export function aggregateMetrics(perWorker: readonly object[]): Promise<string> {
  return AggregatorRegistry.aggregate([...perWorker]).metrics();
}
