import type { Logger } from '../../src/contracts/logger.js';
import {
  events,
  subscribe,
  type ModelBatchEvent,
  type ModelDropEvent,
  type ModelQueueEvent,
} from '../../src/core/events.js';

/** A logger that drops everything: the ONNX tests read events, not log lines. */
export const quietLogger: Logger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  child: () => quietLogger,
};

/** Records one in-process model's batch, queue-depth and drop events until `stop()`. */
export function modelEvents(model: string) {
  const batches: ModelBatchEvent[] = [];
  const drops: ModelDropEvent[] = [];
  const depths: number[] = [];
  const offs = [
    subscribe(events.modelBatch, (e) => void (e.model === model && batches.push(e))),
    subscribe(events.modelDrop, (e) => void (e.model === model && drops.push(e))),
    subscribe(
      events.modelQueue,
      (e: ModelQueueEvent) => void (e.model === model && depths.push(e.depth)),
    ),
  ];
  return { batches, drops, depths, stop: () => offs.forEach((off) => off()) };
}
