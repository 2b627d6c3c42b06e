import type { Residency } from '../contracts/policy.js';

export interface ResidencyConfig {
  readonly node: { readonly id: string; readonly jurisdiction?: string | undefined };
  readonly jurisdictions: Readonly<Record<string, { readonly nodes: readonly string[] }>>;
}

/**
 * Jurisdiction tags → the node set allowed to hold and process that data. This node joins the set
 * of its own jurisdiction. Data tagged with an unknown jurisdiction may go nowhere (fail closed).
 */
export class ResidencyMap implements Residency {
  readonly node: string;
  readonly jurisdiction: string | undefined;
  private readonly sets = new Map<string, ReadonlySet<string>>();
  private readonly local: readonly (string | null)[];

  constructor(config: ResidencyConfig) {
    this.node = config.node.id;
    this.jurisdiction = config.node.jurisdiction;
    for (const [name, j] of Object.entries(config.jurisdictions)) {
      const nodes = new Set(j.nodes);
      if (this.jurisdiction === name) nodes.add(this.node);
      this.sets.set(name, nodes);
    }
    this.local = [
      ...[...this.sets].filter(([, nodes]) => nodes.has(this.node)).map(([name]) => name),
      null,
    ];
  }

  nodesFor(jurisdiction: string): readonly string[] | undefined {
    const nodes = this.sets.get(jurisdiction);
    return nodes === undefined ? undefined : [...nodes];
  }

  mayHold(jurisdiction: string | undefined, node: string = this.node): boolean {
    if (jurisdiction === undefined) return true;
    return this.sets.get(jurisdiction)?.has(node) ?? false;
  }

  localJurisdictions(): readonly (string | null)[] {
    return this.local;
  }
}
