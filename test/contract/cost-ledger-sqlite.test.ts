import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteCostLedger } from '../../src/state/sqlite-cost-ledger.js';
import { costLedgerContract } from './cost-ledger.contract.js';

// The embedded ledger; a second process is a second connection to the same file.
costLedgerContract('SQLite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-costs-'));
  const file = join(dir, 'costs.db');
  const opened = [SqliteCostLedger.open(file)];
  return Promise.resolve({
    store: opened[0]!,
    another: () => Promise.resolve(opened[opened.push(SqliteCostLedger.open(file)) - 1]!),
    close: async () => {
      for (const l of opened) await l.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
});
