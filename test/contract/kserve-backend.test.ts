import { expect } from 'vitest';
import { Pool } from 'undici';
import { KServeBackend } from '../../src/backends/http/kserve.js';
import { systemClock } from '../../src/core/clock.js';
import { httpBackendContract } from './backend.contract.js';

httpBackendContract({
  kind: 'kserve',
  operation: 'infer',
  baseUrl: (origin) => origin,
  make: (baseUrl, caps) =>
    new KServeBackend({
      name: 'sum-test',
      baseUrl,
      dispatcher: new Pool(new URL(baseUrl).origin),
      clock: systemClock,
      upstreamModel: 'sum',
      apiKey: undefined,
      extraHeaders: {},
      tier: 'regional',
      ...caps,
    }),
  request: {
    op: 'infer',
    body: { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] },
  },
  success: {
    model_name: 'sum',
    model_version: '1',
    outputs: [{ name: 'SUM', datatype: 'FP32', shape: [1, 1], data: [3] }],
  },
  checkSuccess: (result) => {
    // The answer names the gateway's model, not the upstream's.
    expect(result.json['model_name']).toBe('sum-test');
    expect(result.json['outputs']).toEqual([
      { name: 'SUM', datatype: 'FP32', shape: [1, 1], data: [3] },
    ]);
  },
  errorBody: (message) => ({ error: message }),
});
