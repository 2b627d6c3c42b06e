// A child of src/observability/logger.test.ts: a request ends and the process exits in the same
// turn, before the request log's batch would run; the line must still reach stdout.
import { events, publish } from '../../src/core/events.js';
import { attachRequestLog, createLogger } from '../../src/observability/logger.js';
import { requestDone } from './events.js';

attachRequestLog(createLogger('info'));
publish(events.requestDone, requestDone('exit-1'));
process.exit(0);
