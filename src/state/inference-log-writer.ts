import { parentPort, workerData } from 'node:worker_threads';
import { SqliteInferenceLog } from './sqlite-inference-log.js';
import type { WriterReply, WriterRequest } from './threaded-inference-log.js';

/**
 * The embedded inference log's writer thread (#15): owns the write connection, so a batch's
 * transaction, its fsync and SQLite's WAL checkpoints never stall the gateway's event loop.
 * Requests run one at a time, in the order they were posted.
 */
const store = SqliteInferenceLog.open((workerData as { path: string }).path);
const port = parentPort!;

port.on('message', (m: WriterRequest) => {
  void run(m).then((reply) => port.postMessage(reply));
});

async function run(m: WriterRequest): Promise<WriterReply> {
  try {
    switch (m.op) {
      case 'append':
        store.appendLines(m.requests, m.calls);
        return { id: m.id, ok: true, value: 0 };
      case 'purge':
        return { id: m.id, ok: true, value: await store.purgeUser(m.tenant, m.user) };
      case 'retain':
        return { id: m.id, ok: true, value: await store.retain(m.rule) };
      case 'close':
        await store.close();
        return { id: m.id, ok: true, value: 0 };
    }
  } catch (err) {
    return { id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}
