import { createRequire } from 'node:module';
import type { Dispatcher, Pool as UndiciPool } from 'undici';

/**
 * The parts of undici the gateway uses (connection pools and `request`), loaded from their own
 * modules. undici's index also loads fetch, WebSocket, EventSource, the HTTP cache and the mock
 * agent, none of which Switchyard uses (measured after a full GC: the index alone costs ~21 MB
 * of RSS, these modules ~11 MB; in the whole gateway the saving is ~3 MB of heap and 3–5 MB of
 * RSS, as other dependencies share the rest). The paths are undici's own files, pinned by the
 * lockfile; test/contract/undici-lean.test.ts fails if an upgrade moves them.
 */
const require = createRequire(import.meta.url);

export const Pool = require('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
export type Pool = UndiciPool;

const apiRequest = require('undici/lib/api/api-request.js') as (
  this: Dispatcher,
  opts: Dispatcher.RequestOptions,
) => Promise<Dispatcher.ResponseData>;

/** `dispatcher.request(opts)`, without relying on undici's index to have added the method. */
export function request(
  dispatcher: Dispatcher,
  opts: Dispatcher.RequestOptions,
): Promise<Dispatcher.ResponseData> {
  return apiRequest.call(dispatcher, opts);
}
