import type { Operation } from '../../contracts/backend.js';
import { syError } from '../../core/errors.js';
import type { RequestContext } from '../context.js';
import type { ModelHandle } from '../runtime.js';

/**
 * Finds the model a request names, checks the tenant may use it and that it serves the
 * operation. Unknown models are 404s, forbidden ones 403s, wrong operations 400s.
 */
export function resolveModel(ctx: RequestContext, name: string, op: Operation): ModelHandle {
  const model = ctx.runtime.models.get(name);
  if (model === undefined)
    throw syError('SY_ERR_MODEL_NOT_FOUND', JSON.stringify(name.slice(0, 200)), { param: 'model' });
  const tenant = ctx.principal?.tenant ?? '';
  if (!ctx.runtime.keys.mayUse(tenant, name)) {
    throw syError('SY_ERR_MODEL_FORBIDDEN', name, { param: 'model' });
  }
  ctx.model = model.name;
  if (!model.operations.has(op)) {
    throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${name} does not serve ${op}`, {
      param: 'model',
    });
  }
  return model;
}
