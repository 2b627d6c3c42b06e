import type { BackendCall, Interceptor } from '../../contracts/backend.js';

/** `compose(backend, a, b)` calls a → b → backend: the first interceptor is the outermost. */
export function compose(target: BackendCall, ...interceptors: Interceptor[]): BackendCall {
  return interceptors.reduceRight<BackendCall>((next, wrap) => wrap(next), target);
}
