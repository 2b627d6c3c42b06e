import { RemoteShard } from '../../src/retrieval/remote-shard.js';
import { startVectorNode, type VectorNode } from '../support/vector-node.js';
import { vectorIndexContract, type IndexSpec } from './vector-index.contract.js';

/** The shard lives on a real gateway node; the contract runs against the HTTP client. */
let nodes: VectorNode[] = [];

async function open(spec: IndexSpec): Promise<RemoteShard> {
  for (const n of nodes) await n.close();
  const node = await startVectorNode({
    node: 'node-b',
    // Both nodes may hold `eu` data, so the contract's tagged vectors may travel between them.
    jurisdictions: { eu: { nodes: ['node-a', 'node-b'] } },
    clock: spec.clock,
    // Every user has consented (the contract stores consented and sensitive data of users): the
    // shard enforces the policy module like the collection routes do (#13, finding 2).
    extra: {
      privacy: {
        purposes: {
          behavioral_inference: { default: true },
          cross_service_personalization: { default: true },
          location: { default: true },
        },
      },
    },
    vectors: {
      data_dir: spec.dir,
      scan_workers: 0,
      collections: {
        memories: { dims: spec.dims, metric: spec.metric, shards: [{ id: spec.id, tier: 'warm' }] },
      },
    },
  });
  nodes = [node];
  return new RemoteShard({
    id: spec.id,
    dims: spec.dims,
    metric: spec.metric,
    url: node.url,
    apiKey: node.nodeKey,
    node: 'node-a',
  });
}

vectorIndexContract({
  kind: 'remote shard over HTTP',
  make: open,
  reopen: open,
  teardown: async () => {
    for (const n of nodes) await n.close();
    nodes = [];
  },
});
