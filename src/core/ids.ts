import { randomUUID } from 'node:crypto';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A new request id, or the client's own `x-request-id` when it is short and plain. */
export function requestId(fromClient?: string | string[]): string {
  if (typeof fromClient === 'string' && CLIENT_ID.test(fromClient)) return fromClient;
  return randomUUID();
}
