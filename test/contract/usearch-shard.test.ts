import { UsearchShard } from '../../src/retrieval/usearch-shard.js';
import { vectorIndexContract } from './vector-index.contract.js';

vectorIndexContract({
  kind: 'usearch HNSW',
  // exactBelow 0: every search goes through the HNSW graph, not the small-set exact path.
  make: (spec) => UsearchShard.open({ ...spec, exactBelow: 0 }),
  reopen: (spec) => UsearchShard.open({ ...spec, exactBelow: 0 }),
});

vectorIndexContract({
  kind: 'usearch HNSW reopened memory-mapped (view)',
  make: (spec) => UsearchShard.open({ ...spec, exactBelow: 0, view: true }),
  reopen: (spec) => UsearchShard.open({ ...spec, exactBelow: 0, view: true }),
});
