import type pg from 'pg';
import type { AuditEntry, AuditLog, AuditQuery, StoredAuditEntry } from '../contracts/audit.js';
import {
  AUDIT_INSERT_COLUMNS,
  auditOf,
  auditParams,
  auditSelect,
  type AuditRow,
} from './audit-rows.js';

/** The audit table of schema `s` (run with the registry schema, under its advisory lock). */
export const AUDIT_SCHEMA = (s: string): string => `
CREATE TABLE IF NOT EXISTS ${s}.rs_audit (
  id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
  target TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT);
ALTER TABLE ${s}.rs_audit ADD COLUMN IF NOT EXISTS before_json TEXT;
ALTER TABLE ${s}.rs_audit ADD COLUMN IF NOT EXISTS after_json TEXT;
CREATE INDEX IF NOT EXISTS rs_audit_target ON ${s}.rs_audit (target, id);
CREATE INDEX IF NOT EXISTS rs_audit_at ON ${s}.rs_audit (at);
`;

/**
 * The scaled audit log: table `rs_audit` in the state store's PostgreSQL schema, shared by every
 * replica. An entry is committed when `appendAudit` resolves.
 */
export class PostgresAuditLog implements AuditLog {
  constructor(
    private readonly pool: pg.Pool,
    private readonly schema: string,
  ) {}

  async appendAudit(e: AuditEntry): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.schema}.rs_audit (${AUDIT_INSERT_COLUMNS})
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      auditParams(e),
    );
  }

  async listAudit(query: AuditQuery = {}): Promise<StoredAuditEntry[]> {
    const { sql, params } = auditSelect(`${this.schema}.rs_audit`, query, (n) => `$${n}`);
    return (await this.pool.query<AuditRow>(sql, params)).rows.map(auditOf);
  }
}
