import { MemoryLimiter } from '../../src/admission/memory-limiter.js';
import { limiterContract } from './limiter.contract.js';

limiterContract('in process', (clock) => {
  const limiter = new MemoryLimiter(clock);
  return Promise.resolve({ limiter, close: () => limiter.close() });
});
