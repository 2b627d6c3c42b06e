import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteRegistryStore } from '../../src/state/sqlite-registry-store.js';

describe('registry and experiment state on SQLite', () => {
  it('loses no acknowledged write when the writing process is killed with SIGKILL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-kill9-'));
    const db = join(dir, 'state.db');
    try {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', join(import.meta.dirname, 'release/sqlite-writer.ts'), db],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      let acked = -1;
      let buf = '';
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split('\n');
          buf = lines.pop()!;
          for (const l of lines) if (l.startsWith('ack ')) acked = Number(l.slice(4));
          // Kill mid-stream, while writes are in flight.
          if (acked >= 150) child.kill('SIGKILL');
        });
        child.once('exit', (_code, signal) =>
          signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited: ${signal}`)),
        );
      });
      expect(acked).toBeGreaterThanOrEqual(150);
      const store = new SqliteRegistryStore(db);
      try {
        for (let i = 0; i <= acked; i++)
          expect(await store.getVersion('m', String(i)), `version ${i}`).toBeDefined();
        const exp = await store.getExperiment('exp');
        expect(exp!.step).toBeGreaterThanOrEqual(acked);
        const audit = await store.listAudit({ target: 'exp', limit: 10_000 });
        expect(audit.length).toBeGreaterThanOrEqual(acked + 1);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
