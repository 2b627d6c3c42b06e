import type { Tier } from '../contracts/backend.js';
import type {
  ConsentPurpose,
  ConsentRegistry,
  DataTag,
  EnforcementPoint,
  ModelTarget,
  PolicyDecision,
  PolicyDenialCode,
  PolicyLabel,
  PolicyModule,
  StripResult,
} from '../contracts/policy.js';
import {
  CONSENT_PURPOSES,
  PERSONALIZATION_CHANNELS,
  POLICY_LABELS,
  type PolicyDeniedEvent,
} from '../contracts/policy.js';
import type { VectorFilter, VectorMetadata } from '../contracts/vector-index.js';
import { channel } from 'node:diagnostics_channel';
import { syError } from '../core/errors.js';
import { redactTagged } from './redaction.js';
import { ResidencyMap, type ResidencyConfig } from './residency.js';

/** What a label allows at one point: always, with the purpose's consent, or never. */
export type Rule = 'allow' | 'consent' | 'deny';

export interface LabelRule {
  readonly ingestion: Rule;
  readonly retrieval: Rule;
  readonly model_input: Rule;
  readonly logging: Rule;
  /** Model tiers this label's data may be passed to (absent: any). */
  readonly model_tiers?: readonly Tier[] | undefined;
}

/** The `privacy:` section of the config (the policy module reads nothing else). */
export interface PolicyRules extends ResidencyConfig {
  readonly labels: Readonly<Record<PolicyLabel, LabelRule>>;
  readonly purposes: Readonly<
    Record<
      ConsentPurpose,
      {
        readonly default: boolean;
        readonly labels: { readonly [L in PolicyLabel]?: LabelRule | undefined };
      }
    >
  >;
}

const POINT_RULE: Readonly<Record<EnforcementPoint, keyof LabelRule>> = {
  ingestion: 'ingestion',
  retrieval: 'retrieval',
  model_input: 'model_input',
  logging: 'logging',
};

const deniedChannel = channel(PERSONALIZATION_CHANNELS.denied);
const allow = (reason: string): PolicyDecision => ({ allow: true, reason });
const deny = (code: PolicyDenialCode, reason: string): PolicyDecision => ({
  allow: false,
  code,
  reason,
});

import { vectorTag } from '../contracts/vector-index.js';

/** The tag of a stored vector (it lives beside the vector contract). */
export { vectorTag };

/**
 * The one policy module: residency first (tagged data only on its jurisdiction's nodes), then the
 * label's rule for the enforcement point (per-purpose overrides win), then the data subject's
 * consent for the datum's purpose. Data under a `consent` rule that names no purpose needs every
 * purpose granted (fail closed). Reasons never contain values or user ids.
 */
export class PolicyEngine implements PolicyModule {
  readonly residency: ResidencyMap;

  constructor(
    private readonly rules: PolicyRules,
    private readonly consent: Pick<ConsentRegistry, 'get'>,
  ) {
    this.residency = new ResidencyMap(rules);
  }

  decide(point: EnforcementPoint, tag: DataTag, target?: ModelTarget): PolicyDecision {
    const d = this.rule(point, tag, target);
    if (!d.allow && deniedChannel.hasSubscribers)
      deniedChannel.publish({ point, code: d.code, label: tag.label } satisfies PolicyDeniedEvent);
    return d;
  }

  private rule(point: EnforcementPoint, tag: DataTag, target?: ModelTarget): PolicyDecision {
    if (
      point === 'model_input' &&
      tag.jurisdiction !== undefined &&
      target?.jurisdiction !== undefined
    ) {
      // A located model (#17): the data's jurisdiction must be the model's own.
      if (target.jurisdiction !== tag.jurisdiction)
        return deny(
          'SY_ERR_RESIDENCY',
          `${tag.jurisdiction} data may not go to ${target.model ?? 'a model'} in ${target.jurisdiction}`,
        );
    } else if (point !== 'logging' && tag.jurisdiction !== undefined) {
      const node =
        point === 'model_input' ? (target?.node ?? this.residency.node) : this.residency.node;
      if (!this.residency.mayHold(tag.jurisdiction, node))
        return deny('SY_ERR_RESIDENCY', `${tag.jurisdiction} data may not be on node ${node}`);
    }
    const rule = this.ruleFor(tag);
    const r = rule[POINT_RULE[point]] as Rule;
    if (r === 'deny') return deny('SY_ERR_POLICY_DENIED', `${tag.label} data: no ${point}`);
    if (point === 'model_input' && rule.model_tiers !== undefined) {
      const tier = target?.tier;
      if (tier === undefined || !rule.model_tiers.includes(tier))
        return deny(
          'SY_ERR_POLICY_DENIED',
          `${tag.label} data goes only to ${rule.model_tiers.join('/')} models`,
        );
    }
    if (r === 'allow') return allow(`${tag.label}: ${point} allowed`);
    if (tag.userId === undefined) return allow(`${tag.label}: no data subject`);
    const granted = this.consent.get(tag.tenant, tag.userId).purposes;
    if (tag.purpose === undefined) {
      const missing = CONSENT_PURPOSES.find((p) => !granted[p]);
      return missing === undefined
        ? allow(`${tag.label}: every purpose consented`)
        : deny('SY_ERR_CONSENT_REQUIRED', `${tag.label} data without a purpose needs ${missing}`);
    }
    return granted[tag.purpose]
      ? allow(`${tag.label}: ${tag.purpose} consented`)
      : deny('SY_ERR_CONSENT_REQUIRED', `no consent to ${tag.purpose}`);
  }

  admit(tag: DataTag): void {
    const d = this.decide('ingestion', tag);
    if (!d.allow) throw syError(d.code, d.reason);
  }

  filterRetrieved<T>(items: readonly T[], tagOf: (item: T) => DataTag): T[] {
    return items.filter((item) => this.decide('retrieval', tagOf(item)).allow);
  }

  vectorGuard(tenant: string): {
    readonly filter: VectorFilter;
    readonly predicate: (meta: VectorMetadata) => boolean;
  } {
    const labels = POLICY_LABELS.filter(
      (l) =>
        this.rules.labels[l].retrieval !== 'deny' ||
        CONSENT_PURPOSES.some((p) => {
          const o = this.rules.purposes[p].labels[l];
          return o !== undefined && o.retrieval !== 'deny';
        }),
    );
    return {
      filter: { labels, jurisdictions: this.residency.localJurisdictions() },
      predicate: (meta) =>
        meta.tenant === tenant && this.decide('retrieval', vectorTag(meta)).allow,
    };
  }

  stripModelInput<T>(
    items: readonly T[],
    tagOf: (item: T) => DataTag,
    target?: ModelTarget,
  ): StripResult<T> {
    const kept: T[] = [];
    const stripped: { index: number; reason: string }[] = [];
    items.forEach((item, index) => {
      const d = this.decide('model_input', tagOf(item), target);
      if (d.allow) kept.push(item);
      else stripped.push({ index, reason: d.reason });
    });
    return { kept, stripped };
  }

  redact(value: unknown): unknown {
    return redactTagged(value, (tag) => this.decide('logging', tag).allow);
  }

  private ruleFor(tag: DataTag): LabelRule {
    if (tag.purpose !== undefined) {
      const override = this.rules.purposes[tag.purpose].labels[tag.label];
      if (override !== undefined) return override;
    }
    return this.rules.labels[tag.label];
  }
}
