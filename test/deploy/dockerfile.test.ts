import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT } from './manifests.js';

// #17 item 6: there is no docker daemon here, so the Dockerfile is checked by reading it: its
// stages, its user, its healthcheck, and that its entrypoint is the real CLI with its flags.

interface Instruction {
  readonly op: string;
  readonly args: string;
}
interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly steps: Instruction[];
}

/** Dockerfile instructions by stage: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Stage[] {
  const lines = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (m === null) throw new Error(`not an instruction: ${line}`);
    const op = m[1]!.toUpperCase();
    const args = m[2]!;
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      stages.push({ from: f[1]!, name: f[2], steps: [] });
    } else {
      stages.at(-1)!.steps.push({ op, args });
    }
  }
  return stages;
}

const exec = (s: Stage, op: string): string[] => {
  const found = s.steps.filter((i) => i.op === op);
  expect(found.length, op).toBe(1);
  return JSON.parse(found[0]!.args) as string[];
};

const text = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
const stages = parseDockerfile(text);
const runtime = stages.at(-1)!;

describe('the Dockerfile (deploy/Dockerfile)', () => {
  it('builds in a builder stage: npm ci, the TypeScript build and the demo models', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const builder = stages.find((s) => s.name === 'builder')!;
    const runs = builder.steps.filter((i) => i.op === 'RUN').map((i) => i.args);
    expect(runs.some((r) => r.includes('npm ci'))).toBe(true);
    expect(runs.some((r) => r.includes('npm run build'))).toBe(true);
    expect(runs.some((r) => r.includes('models build-demo'))).toBe(true);
    expect(runs.some((r) => r.includes('npm prune --omit=dev'))).toBe(true);
    // The runtime stage takes only built output from it, and compiles nothing itself.
    const copies = runtime.steps.filter((i) => i.op === 'COPY').map((i) => i.args);
    expect(copies.filter((c) => c.includes('--from=builder')).length).toBeGreaterThan(0);
    expect(runtime.steps.some((i) => i.op === 'RUN' && /npm (ci|install)/.test(i.args))).toBe(
      false,
    );
    // Both stages run the Node major the package supports.
    for (const s of stages) expect(s.from).toMatch(/^node:20\./);
  });

  it('copies only files that exist in the build context', () => {
    for (const s of stages)
      for (const c of s.steps.filter((i) => i.op === 'COPY' && !i.args.includes('--from='))) {
        const parts = c.args.split(/\s+/).filter((p) => !p.startsWith('--'));
        for (const src of parts.slice(0, -1)) expect(existsSync(join(ROOT, src)), src).toBe(true);
      }
  });

  it('runs as a numeric non-root user, the one the Deployment asks for', () => {
    const users = runtime.steps.filter((i) => i.op === 'USER').map((i) => i.args);
    expect(users.length).toBeGreaterThan(0);
    const [uid, gid] = users.at(-1)!.split(':');
    expect(uid).toMatch(/^\d+$/);
    expect(Number(uid)).toBeGreaterThan(0);
    expect(Number(gid)).toBeGreaterThan(0);
    const deployment = parse(
      readFileSync(join(ROOT, 'deploy/kubernetes/base/deployment.yaml'), 'utf8'),
    ) as { spec: { template: { spec: { securityContext: Record<string, number> } } } };
    const pod = deployment.spec.template.spec.securityContext;
    expect(pod['runAsUser']).toBe(Number(uid));
    expect(pod['runAsGroup']).toBe(Number(gid));
  });

  it('keeps writable state under a volume, where the default config writes it', () => {
    const volumes = runtime.steps.filter((i) => i.op === 'VOLUME').map((i) => i.args);
    expect(volumes).toEqual(['["/var/lib/switchyard"]']);
    const config = parse(
      readFileSync(join(ROOT, 'deploy/kubernetes/base/switchyard.yaml'), 'utf8'),
    ) as { audit: { sqlite: string } };
    expect(config.audit.sqlite.startsWith('/var/lib/switchyard/')).toBe(true);
  });

  it('checks health against the readiness route on the configured port', () => {
    const hc = runtime.steps.find((i) => i.op === 'HEALTHCHECK')!;
    expect(hc).toBeDefined();
    const cmd = JSON.parse(hc.args.slice(hc.args.indexOf('CMD') + 3).trim()) as string[];
    expect(cmd[0]).toBe('node');
    const config = parse(
      readFileSync(join(ROOT, 'deploy/kubernetes/base/switchyard.yaml'), 'utf8'),
    ) as { server: { port: number } };
    expect(cmd.join(' ')).toContain(`http://127.0.0.1:${config.server.port}/readyz`);
    // test/deploy/kubernetes.test.ts proves /readyz answers 200 on a running gateway.
  });

  it('starts the real CLI entry with the flags of its #! line, serving the default config', () => {
    const entry = exec(runtime, 'ENTRYPOINT');
    const cmd = exec(runtime, 'CMD');
    const shebang = readFileSync(join(ROOT, 'src/cli/index.ts'), 'utf8').split('\n', 1)[0]!;
    const flags = shebang.replace(/^#!\/usr\/bin\/env -S node\s*/, '').split(/\s+/);
    expect(entry).toEqual(['node', ...flags, 'dist/cli/index.js']);
    // dist/cli/index.js is what `npm run build` makes of src/cli/index.ts (tsconfig.build.json).
    const build = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as {
      compilerOptions?: { outDir?: string; rootDir?: string };
    };
    expect(build.compilerOptions?.outDir?.replace(/^\.\//, '')).toBe('dist');
    expect(cmd.slice(0, 3)).toEqual(['serve', '--config', '/etc/switchyard/switchyard.yaml']);
    const copied = runtime.steps.find(
      (i) => i.op === 'COPY' && i.args.endsWith(' /etc/switchyard/switchyard.yaml'),
    );
    expect(copied?.args).toBe(
      'deploy/kubernetes/base/switchyard.yaml /etc/switchyard/switchyard.yaml',
    );
  });

  it('keeps dependencies, builds and secrets out of the build context', () => {
    const ignore = readFileSync(join(ROOT, 'deploy/Dockerfile.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'));
    for (const p of ['**/node_modules', 'dist', '.git', '**/*secret*', '**/.env'])
      expect(ignore).toContain(p);
    // Nothing the Dockerfile copies from the context is ignored.
    expect(ignore).not.toContain('src');
    expect(ignore).not.toContain('deploy');
  });
});
