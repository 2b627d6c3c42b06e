import { MemoryAuditLog } from '../../src/observability/audit-memory.js';
import { auditLogContract } from './audit.contract.js';

auditLogContract('memory', () =>
  Promise.resolve({ log: new MemoryAuditLog(), close: () => Promise.resolve() }),
);
