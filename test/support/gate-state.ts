import { generateKey, hashKey } from '../../src/core/api-key.js';
import { TEST_SECRET } from './gateway.js';

/** Keys for a gateway whose state a test reads through the admin API. */
export interface AdminKeys {
  /** An ordinary key of tenant `acme`. */
  readonly user: string;
  /** An admin key (`GET /admin/mode` shows the concurrency gates). */
  readonly admin: string;
  /** The `tenants` config section that makes both valid. */
  readonly tenants: Record<string, unknown>;
}

export function adminKeys(): AdminKeys {
  const user = generateKey('sk');
  const admin = generateKey('sk');
  return {
    user,
    admin,
    tenants: {
      acme: {
        keys: [
          { id: 'user', hash: hashKey(user, TEST_SECRET) },
          { id: 'ops', hash: hashKey(admin, TEST_SECRET), admin: true },
        ],
        models: ['*'],
      },
    },
  };
}

export interface GateState {
  readonly limit: number;
  readonly in_flight: number;
  readonly queued: number;
}

/** The concurrency gates as `GET /admin/mode` reports them (one per upstream model called). */
export async function gates(url: string, adminKey: string): Promise<Record<string, GateState>> {
  const res = await fetch(`${url}/admin/mode`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  if (res.status !== 200) throw new Error(`GET /admin/mode: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { gates: Record<string, GateState> }).gates;
}

/**
 * Waits until no gate has a request in flight or queued; resolves with the gates as last read
 * (so a test can show what stayed taken when the wait ran out).
 */
export async function gatesIdle(
  url: string,
  adminKey: string,
  timeoutMs = 10_000,
): Promise<Record<string, GateState>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const g = await gates(url, adminKey);
    const busy = Object.values(g).some((s) => s.in_flight > 0 || s.queued > 0);
    if (!busy || Date.now() > until) return g;
    await new Promise((r) => setTimeout(r, 50));
  }
}
