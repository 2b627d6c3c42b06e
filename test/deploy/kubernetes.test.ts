import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { validateConfig } from '../../src/wiring/validate-config.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import {
  at,
  KUSTOMIZE_DIR,
  kubectlOrSkip,
  only,
  render,
  TIERS,
  validateObject,
  type K8sObject,
} from './manifests.js';

// #17 item 6: the kustomize base and its three tiers render, every object is valid against the
// Kubernetes schemas (offline, kubernetes-models), and the invariants that matter hold.
const run = kubectlOrSkip('the Kubernetes manifest tests');

interface Container {
  readonly name: string;
  readonly args?: string[];
  readonly env?: { name: string; value?: string; valueFrom?: Record<string, unknown> }[];
  readonly ports?: { name: string; containerPort: number }[];
  readonly securityContext?: Record<string, unknown>;
  readonly readinessProbe?: { httpGet?: { path: string; port: string | number } };
  readonly livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readonly startupProbe?: { httpGet?: { path: string; port: string | number } };
  readonly resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  readonly volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}

const container = (d: K8sObject): Container =>
  (at(d, 'spec.template.spec.containers') as Container[])[0]!;

describe.runIf(run)('the Kubernetes manifests (deploy/kubernetes)', () => {
  const rendered = new Map<string, K8sObject[]>();
  beforeAll(() => {
    for (const tier of TIERS) rendered.set(tier, render(join(KUSTOMIZE_DIR, 'overlays', tier)));
    rendered.set('base', render(join(KUSTOMIZE_DIR, 'base')));
  });

  it('render every object a tier needs, in the tier namespace', () => {
    for (const tier of TIERS) {
      const objs = rendered.get(tier)!;
      expect(objs.map((o) => o.kind).sort()).toEqual([
        'ConfigMap',
        'Deployment',
        'HorizontalPodAutoscaler',
        'Namespace',
        'NetworkPolicy',
        'PodDisruptionBudget',
        'Service',
        'ServiceAccount',
      ]);
      for (const o of objs)
        if (o.kind !== 'Namespace') expect(o.metadata.namespace).toBe(`switchyard-${tier}`);
    }
  });

  it('validate every object against the Kubernetes schemas, and catch a broken one', () => {
    for (const [, objs] of rendered)
      for (const o of objs)
        expect(() => validateObject(o), `${o.kind} ${o.metadata.name}`).not.toThrow();
    // The check can fail: a replica count as a string is not a Deployment.
    const d = only(rendered.get('central')!, 'Deployment');
    const broken = { ...d, spec: { ...(d['spec'] as object), replicas: 'three' } };
    expect(() => validateObject(broken)).toThrow();
  });

  it('run as non-root on a read-only root filesystem, writing only to volumes', () => {
    for (const tier of TIERS) {
      const d = only(rendered.get(tier)!, 'Deployment');
      const pod = at(d, 'spec.template.spec') as Record<string, unknown>;
      expect(at(pod, 'securityContext.runAsNonRoot')).toBe(true);
      expect(at(pod, 'securityContext.runAsUser')).not.toBe(0);
      const c = container(d);
      expect(c.securityContext).toMatchObject({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      });
      const mounts = new Map(c.volumeMounts!.map((m) => [m.mountPath, m]));
      expect(mounts.get('/etc/switchyard')?.readOnly).toBe(true);
      expect(mounts.has('/var/lib/switchyard')).toBe(true);
    }
  });

  it('set requests and a memory limit, and autoscale and protect the Deployment it names', () => {
    for (const tier of TIERS) {
      const objs = rendered.get(tier)!;
      const d = only(objs, 'Deployment');
      const c = container(d);
      expect(c.resources?.requests?.['cpu']).toBeDefined();
      expect(c.resources?.requests?.['memory']).toBeDefined();
      expect(c.resources?.limits?.['memory']).toBeDefined();
      const hpa = only(objs, 'HorizontalPodAutoscaler');
      expect(at(hpa, 'spec.scaleTargetRef.name')).toBe(d.metadata.name);
      expect(at(hpa, 'spec.minReplicas')).toBeGreaterThanOrEqual(2);
      const selector = at(d, 'spec.selector.matchLabels');
      const labels = at(d, 'spec.template.metadata.labels') as Record<string, string>;
      for (const o of [only(objs, 'PodDisruptionBudget'), only(objs, 'Service')]) {
        const sel = (at(o, 'spec.selector.matchLabels') ?? at(o, 'spec.selector')) as Record<
          string,
          string
        >;
        expect(labels).toMatchObject(sel);
      }
      expect(labels).toMatchObject(selector as object);
      expect(labels).toMatchObject(
        at(only(objs, 'NetworkPolicy'), 'spec.podSelector.matchLabels') as object,
      );
    }
  });

  it('reference secrets without holding any value', () => {
    for (const tier of TIERS) {
      const objs = rendered.get(tier)!;
      expect(objs.some((o) => o.kind === 'Secret')).toBe(false);
      for (const e of container(only(objs, 'Deployment')).env ?? []) {
        if (/KEY|SECRET|PASSWORD|TOKEN/.test(e.name)) {
          expect(e.value, e.name).toBeUndefined();
          expect(at(e, 'valueFrom.secretKeyRef.name')).toBe('switchyard-secrets');
        }
      }
    }
  });

  it('let each tier be called only by the tier below it', () => {
    const fromNamespaces = (tier: string): string[] => {
      const rules = at(only(rendered.get(tier)!, 'NetworkPolicy'), 'spec.ingress') as {
        from?: { namespaceSelector?: { matchLabels?: Record<string, string> } }[];
      }[];
      return rules.flatMap((r) =>
        (r.from ?? []).flatMap(
          (peer) => peer.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] ?? [],
        ),
      );
    };
    expect(fromNamespaces('regional')).toContain('switchyard-edge');
    expect(fromNamespaces('central')).toContain('switchyard-regional');
    expect(fromNamespaces('central')).not.toContain('switchyard-edge');
    expect(fromNamespaces('edge')).not.toContain('switchyard-regional');
  });

  describe('the config each tier ships', () => {
    const env = {
      SWITCHYARD_KEY_SECRET: 'a-test-key-secret',
      SWITCHYARD_SERVICE_KEY: 'a-test-service-key-0123456789',
      SWITCHYARD_CHILD_SERVICE_KEY: 'a-test-child-service-key-0123456789',
      OPENAI_API_KEY: 'sk-test',
    };
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'switchyard-k8s-'));
      for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
    });
    afterAll(() => {
      vi.unstubAllEnvs();
      rmSync(dir, { recursive: true, force: true });
    });

    const configOf = (objs: readonly K8sObject[]): string =>
      (only(objs, 'ConfigMap')['data'] as Record<string, string>)['switchyard.yaml']!;

    it('passes the gateway validation (validateConfig) in every tier', async () => {
      for (const tier of [...TIERS, 'base']) {
        const objs = rendered.get(tier)!;
        const text = configOf(objs);
        const snap = parseConfig(text, join(dir, `${tier}.yaml`), dir);
        expect(await validateConfig(snap), tier).toEqual([]);
        // Served where the Deployment mounts it and `serve --config` reads it.
        const c = container(only(objs, 'Deployment'));
        expect(c.args).toEqual(['serve', '--config', '/etc/switchyard/switchyard.yaml']);
        // Listens on the port the probes and the Service use, on every interface.
        expect(snap.config.server.port).toBe(c.ports![0]!.containerPort);
        expect(snap.config.server.host).toBe('0.0.0.0');
        // Writes only under the state volume.
        const audit = snap.config.state ?? snap.config.audit;
        if ('sqlite' in audit) expect(audit.sqlite.startsWith('/var/lib/switchyard/')).toBe(true);
      }
    });

    it('escalate to the tier above as its child (backend: switchyard), with a key the parent accepts', () => {
      const snaps = new Map(
        TIERS.map((t) => [t, parseConfig(configOf(rendered.get(t)!), join(dir, `${t}.yaml`), dir)]),
      );
      const parentOf = { edge: 'regional', regional: 'central' } as const;
      for (const [tier, parent] of [
        ['edge', parentOf.edge],
        ['regional', parentOf.regional],
      ] as const) {
        const models = Object.values(snaps.get(tier)!.config.models);
        // No hop to a gateway is a plain OpenAI model any more (#17).
        for (const m of models)
          if (
            m.backend !== 'onnx' &&
            m.url.includes('.svc.cluster.local') &&
            m.url.includes('switchyard')
          )
            expect(m.backend, `${tier}: ${m.url}`).toBe('switchyard');
        const hops = models.filter((m) => m.backend === 'switchyard');
        expect(hops.length, tier).toBeGreaterThan(0);
        const accepted = snaps.get(parent)!.config.auth.service_keys.map((k) => k.id);
        const d = only(rendered.get(tier)!, 'Deployment');
        for (const m of hops) {
          if (m.backend !== 'switchyard') continue;
          expect(m.url).toContain(`switchyard-${parent}.svc.cluster.local`);
          expect(accepted).toContain(m.service_key.id);
          // The key itself comes from the Secret, through the Deployment's env.
          const envName = (m.service_key.secret as { env?: string }).env!;
          const e = (container(d).env ?? []).find((x) => x.name === envName);
          expect(at(e, 'valueFrom.secretKeyRef.name'), `${tier}: ${envName}`).toBe(
            'switchyard-secrets',
          );
        }
        // The parent reads the same key from its own Secret.
        const pd = only(rendered.get(parent)!, 'Deployment');
        for (const k of snaps.get(parent)!.config.auth.service_keys) {
          const envName = (k.secret as { env?: string }).env!;
          const e = (container(pd).env ?? []).find((x) => x.name === envName);
          expect(at(e, 'valueFrom.secretKeyRef.name'), `${parent}: ${envName}`).toBe(
            'switchyard-secrets',
          );
        }
      }
    });

    it('is refused by the same validation when it is broken', async () => {
      const text = configOf(rendered.get('regional')!).replace(
        'fallback: [chat-central]',
        'fallback: [chat-nowhere]',
      );
      let problems: readonly string[];
      try {
        problems = await validateConfig(parseConfig(text, join(dir, 'bad.yaml'), dir));
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        problems = err.problems;
      }
      expect(problems.join('\n')).toContain('unknown model "chat-nowhere"');
    });

    it('roll the pods when the config changes (the ConfigMap name carries its hash)', () => {
      const names = TIERS.map((t) => only(rendered.get(t)!, 'ConfigMap').metadata.name);
      expect(new Set(names).size).toBe(3);
      for (const t of TIERS) {
        const objs = rendered.get(t)!;
        const volumes = at(only(objs, 'Deployment'), 'spec.template.spec.volumes') as {
          configMap?: { name: string };
        }[];
        expect(volumes.map((v) => v.configMap?.name)).toContain(
          only(objs, 'ConfigMap').metadata.name,
        );
      }
    });
  });

  describe('the probes', () => {
    let gw: TestGateway;
    beforeAll(async () => {
      gw = await startTestGateway();
    });
    afterAll(() => gw.close());

    it('point at routes the gateway answers with 200 when it is up', async () => {
      const paths = new Set<string>();
      for (const tier of TIERS) {
        const c = container(only(rendered.get(tier)!, 'Deployment'));
        for (const p of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
          expect(p?.httpGet?.port).toBe(c.ports![0]!.name);
          paths.add(p!.httpGet!.path);
        }
      }
      expect([...paths].sort()).toEqual(['/healthz', '/readyz']);
      for (const p of paths) {
        const res = await fetch(`${gw.url}${p}`);
        expect(res.status, p).toBe(200);
      }
      // Readiness names the config the replica serves.
      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as { config: string };
      expect(ready.config).toBe(gw.gateway.runtime().snapshot.digest);
      expect((await fetch(`${gw.url}/readyz-nope`)).status).toBe(404);
    });
  });
});
