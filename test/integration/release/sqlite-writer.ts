/**
 * Child process for the kill -9 test: writes registry, experiment and audit records to SQLite
 * as fast as it can and prints `ack <i>` after each write resolves. The parent kills it with
 * SIGKILL mid-stream and checks that every acknowledged write is there.
 */
import { SqliteRegistryStore } from '../../../src/state/sqlite-registry-store.js';

const path = process.argv[2]!;
const store = new SqliteRegistryStore(path);
for (let i = 0; ; i++) {
  await store.insertVersion({
    model: 'm',
    version: String(i),
    stage: 'staging',
    digest: `sha256:${i}`,
    sizeBytes: i,
    files: ['model.onnx'],
    createdAt: i,
    updatedAt: i,
    metadata: {},
  });
  const cur = await store.getExperiment('exp');
  await store.putExperiment(
    {
      spec: {
        id: 'exp',
        slot: 's',
        kind: 'canary',
        layer: 'default',
        traffic: 100,
        holdout: 0,
        variants: [
          { name: 'stable', model: 'm', version: '0', weight: 1 },
          { name: 'canary', model: 'm', version: String(i), weight: 1 },
        ],
      },
      status: 'running',
      allocation: { start: 0, end: 10_000 },
      step: i,
      stepSince: i,
      reason: `step ${i}`,
      createdAt: 0,
      updatedAt: i,
    },
    cur?.revision ?? 0,
  );
  await store.appendAudit({
    at: i,
    actor: 'system',
    action: 'experiment.ramp',
    target: 'exp',
    reason: String(i),
  });
  process.stdout.write(`ack ${i}\n`);
}
