import { loadConfigFile } from '../config/load.js';
import type { StoredAuditEntry } from '../contracts/audit.js';
import {
  AUDIT_MAX_LIMIT,
  AUDIT_PARAMS,
  auditEntryJson,
  nextAuditCursor,
  parseAuditQuery,
} from '../observability/audit-query.js';
import { openAuditTrail } from '../state/open-state.js';
import { table, type CliIo } from './io.js';
import type { CommandKit } from './program.js';

interface AuditListOptions {
  readonly config: string;
  readonly action?: string;
  readonly actor?: string;
  readonly target?: string;
  readonly since?: string;
  readonly until?: string;
  readonly limit?: string;
  readonly cursor?: string;
  readonly json?: boolean;
}

/** `before → after`, compact, for one table cell. */
function change(e: StoredAuditEntry): string {
  if (e.before === undefined && e.after === undefined) return '';
  const show = (v: unknown): string => (v === undefined ? '-' : JSON.stringify(v));
  const s = `${show(e.before)} → ${show(e.after)}`;
  return s.length > 80 ? `${s.slice(0, 79)}…` : s;
}

/** `switchyard audit list`: the same store and the same query as `GET /admin/audit`. */
async function auditList(o: AuditListOptions, io: CliIo): Promise<void> {
  // Parsed before anything is opened: a bad --since is a usage error (exit 2).
  const query = parseAuditQuery(
    Object.fromEntries(AUDIT_PARAMS.flatMap((k) => (o[k] === undefined ? [] : [[k, o[k]]]))),
  );
  const snap = await loadConfigFile(o.config);
  const { state, audit } = snap.config;
  const trail = await openAuditTrail({ state, audit, dir: snap.dir });
  let entries: StoredAuditEntry[];
  try {
    entries = await trail.log.listAudit(query);
  } finally {
    await trail.close();
  }
  const next = nextAuditCursor(entries, query.limit);
  if (o.json === true) {
    io.out(`${JSON.stringify({ entries: entries.map(auditEntryJson), next_cursor: next })}\n`);
    return;
  }
  if (entries.length === 0) {
    io.err(`switchyard: no audit entries match (${trail.where})\n`);
    return;
  }
  const rows = entries.map((e) => [
    new Date(e.at).toISOString().replace('T', ' ').slice(0, 19),
    e.actor,
    e.action,
    e.target,
    e.reason.replace(/\s+/g, ' ').slice(0, 60),
    change(e),
  ]);
  io.out(
    `${table([['time (UTC)', 'actor', 'action', 'target', 'reason', 'change'], ...rows], 'left')}\n`,
  );
  if (next !== null) io.err(`switchyard: more entries: add --cursor ${next}\n`);
}

/** `audit list`. */
export function registerAuditCommands(kit: CommandKit): void {
  kit
    .group('audit')
    .command('list')
    .description(
      'List the audit trail of admin changes, newest first: mode overrides, consent changes, ' +
        'registry and experiment changes, key creation, config reloads. Reads the store the ' +
        "config's gateway writes (its state: store, or its audit.sqlite file).",
    )
    .requiredOption('-c, --config <file>', 'the gateway config')
    .option('--action <prefix>', 'only actions starting with this (mode. matches mode.override)')
    .option('--actor <actor>', 'only this actor, such as key:<fingerprint> or cli:<user>')
    .option('--target <target>', 'only this target')
    .option('--since <time>', 'only entries at or after this time (epoch ms or ISO 8601)')
    .option('--until <time>', 'only entries at or before this time (epoch ms or ISO 8601)')
    .option('--limit <n>', `at most this many (1 to ${AUDIT_MAX_LIMIT}, default 100)`)
    .option('--cursor <c>', 'the next page: the cursor the previous page printed')
    .option('--json', 'print JSON as GET /admin/audit answers')
    .action(kit.action((o: AuditListOptions) => auditList(o, kit.io)));
}
