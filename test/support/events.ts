import type { RequestDoneEvent } from '../../src/core/events.js';

/** A chat request's end as the front door publishes it, with `over` set over it. */
export const requestDone = (
  requestId: string,
  over: Partial<RequestDoneEvent> = {},
): RequestDoneEvent => ({
  requestId,
  method: 'POST',
  route: '/v1/chat/completions',
  model: 'chat',
  tenant: 'acme',
  keyFingerprint: 'fp',
  trafficClass: 'interactive',
  status: 200,
  code: undefined,
  durationMs: 3,
  stream: false,
  path: 'chat#1:ok',
  ...over,
});
