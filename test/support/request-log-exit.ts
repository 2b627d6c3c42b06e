// A child of src/observability/logger.test.ts: a request ends and the process exits in the same turn, before the
// request log's batch would run; the line must still reach stdout.
import { events, publish } from '../../src/core/events.js';
import { attachRequestLog, createLogger } from '../../src/observability/logger.js';

attachRequestLog(createLogger('info'));
publish(events.requestDone, {
  requestId: 'exit-1',
  method: 'POST',
  route: '/v1/chat/completions',
  model: 'm',
  tenant: 't',
  keyFingerprint: 'fp',
  trafficClass: 'interactive',
  status: 200,
  code: undefined,
  durationMs: 1,
  stream: false,
  path: 'm#1:ok',
});
process.exit(0);
