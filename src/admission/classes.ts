import { syError } from '../core/errors.js';
import type { ClassSpec, TenantAdmission } from './settings.js';

export const CLASS_HEADER = 'x-switchyard-class';

/**
 * Which traffic class a request runs in. A class the client names (the header) must be one the
 * tenant may use: never more critical than its `max_class`, and inside its `classes` when that
 * list is set; asking for more is refused (no self-promotion). A class that comes from config
 * (a journey's, a route's, the tenant's default) is instead lowered to the best one the tenant
 * may use.
 */
export function resolveClass(
  classes: Readonly<Record<string, ClassSpec>>,
  tenant: TenantAdmission | undefined,
  requested: string | undefined,
  configured: string | undefined,
  fallback: string,
): string {
  if (requested !== undefined) {
    if (!Object.hasOwn(classes, requested)) {
      throw syError(
        'SY_ERR_INVALID_REQUEST',
        `${CLASS_HEADER} must be one of ${Object.keys(classes).join(', ')}`,
        { param: CLASS_HEADER },
      );
    }
    if (!allowed(classes, tenant, requested)) {
      throw syError('SY_ERR_CLASS_FORBIDDEN', JSON.stringify(requested.slice(0, 64)), {
        param: CLASS_HEADER,
      });
    }
    return requested;
  }
  const wanted = configured ?? tenant?.default_class ?? fallback;
  if (Object.hasOwn(classes, wanted) && allowed(classes, tenant, wanted)) return wanted;
  return demote(classes, tenant, wanted);
}

export function allowed(
  classes: Readonly<Record<string, ClassSpec>>,
  tenant: TenantAdmission | undefined,
  name: string,
): boolean {
  const spec = classes[name];
  if (spec === undefined) return false;
  if (tenant?.classes !== undefined && !tenant.classes.includes(name)) return false;
  const max = tenant?.max_class === undefined ? undefined : classes[tenant.max_class];
  return max === undefined || spec.priority >= max.priority;
}

/** The most critical allowed class no more critical than `wanted`; else the least critical allowed. */
function demote(
  classes: Readonly<Record<string, ClassSpec>>,
  tenant: TenantAdmission | undefined,
  wanted: string,
): string {
  const floor = classes[wanted]?.priority ?? -Infinity;
  const ok = Object.entries(classes)
    .filter(([n]) => allowed(classes, tenant, n))
    .sort((a, b) => a[1].priority - b[1].priority);
  const pick = ok.find(([, s]) => s.priority >= floor) ?? ok.at(-1);
  if (pick === undefined) throw syError('SY_ERR_CLASS_FORBIDDEN', 'the tenant may use no class');
  return pick[0];
}
