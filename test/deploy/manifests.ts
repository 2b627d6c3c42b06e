import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parseAllDocuments } from 'yaml';

export const ROOT = join(import.meta.dirname, '../..');
export const KUSTOMIZE_DIR = join(ROOT, 'deploy/kubernetes');
export const TIERS = ['edge', 'regional', 'central'] as const;

export type K8sObject = {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string };
} & Record<string, unknown>;

/**
 * True when `kubectl` can render kustomizations here. Under `CI=true` a missing kubectl is an
 * error, never a skip; otherwise the skip is printed with its reason.
 */
export function kubectlOrSkip(what: string): boolean {
  const r = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  if (r.status === 0) return true;
  if (process.env['CI'] === 'true')
    throw new Error(`${what}: kubectl is not installed and CI=true`);
  console.warn(`skipping ${what}: kubectl is not installed (${r.error?.message ?? r.stderr})`);
  return false;
}

/** `kubectl kustomize <dir>` (offline: kustomize is built into kubectl), parsed. */
export function render(dir: string): K8sObject[] {
  const text = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  return parseAllDocuments(text).map((d) => d.toJS() as K8sObject);
}

type Validating = new (data: never) => { validate(): void };

/** The kubernetes-models class of each kind the manifests use (offline schema validation). */
const MODELS: Readonly<Record<string, Validating>> = {
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
};

/** Validates an object against its Kubernetes schema; throws when it is not valid. */
export function validateObject(o: K8sObject): void {
  const Model = MODELS[`${o.apiVersion}/${o.kind}`];
  if (Model === undefined) throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
  new Model(o as never).validate();
}

export function only(objects: readonly K8sObject[], kind: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0]!;
}

/** A dotted path into a rendered object (`spec.template.spec`), for tests. */
export function at(o: unknown, path: string): unknown {
  let cur: unknown = o;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}
