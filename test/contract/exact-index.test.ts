import { ExactIndex } from '../../src/retrieval/exact-index.js';
import { vectorIndexContract } from './vector-index.contract.js';

vectorIndexContract({
  kind: 'exact (brute force)',
  make: (spec) => ExactIndex.open(spec),
  reopen: (spec) => ExactIndex.open(spec),
});
