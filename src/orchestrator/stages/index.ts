import type { StageKind } from '../stage-kit.js';
import { branchKind } from './branch.js';
import { cacheKind } from './cache.js';
import { classifyKind } from './classify.js';
import { fallbackKind } from './fallback.js';
import { featuresKind } from './features.js';
import { inferKind } from './infer.js';
import { parallelKind } from './parallel.js';
import { policyKind } from './policy.js';
import { respondKind } from './respond.js';
import { retrieveKind } from './retrieve.js';
import { transformKind } from './transform.js';

/** Every stage kind a journey may use, by config key. */
export const STAGE_KINDS: ReadonlyMap<string, StageKind> = new Map(
  (
    [
      cacheKind,
      featuresKind,
      retrieveKind,
      classifyKind,
      inferKind,
      policyKind,
      branchKind,
      parallelKind,
      fallbackKind,
      transformKind,
      respondKind,
    ] as StageKind<never>[]
  ).map((k) => [k.kind, k as unknown as StageKind]),
);
