import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { syError } from '../core/errors.js';

/** Model and version names: no separators, no leading dot, so never a path traversal. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkName(kind: 'model' | 'version' | 'key id', value: unknown): string {
  if (typeof value !== 'string' || !NAME.test(value) || value.includes('..'))
    throw syError(
      'SY_ERR_REGISTRY_INVALID',
      `${kind} must match ${NAME.source} without ".." (got ${JSON.stringify(String(value).slice(0, 80))})`,
    );
  return value;
}

/** `base/parts…`, refusing anything that would resolve outside `base`. */
export function inside(base: string, ...parts: string[]): string {
  const root = resolve(base);
  const p = resolve(root, ...parts);
  const rel = relative(root, p);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel))
    throw syError('SY_ERR_REGISTRY_INVALID', `path escapes the registry: ${parts.join('/')}`);
  return p;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * The regular files of an artifact (a file, or a directory walked recursively), relative paths
 * sorted. Symbolic links and other special files are refused: they could point outside.
 */
export async function listArtifactFiles(
  source: string,
): Promise<{ root: string; files: string[] }> {
  const st = await lstat(source).catch(() => undefined);
  if (st === undefined) throw syError('SY_ERR_REGISTRY_INVALID', `no such artifact: ${source}`);
  if (st.isSymbolicLink())
    throw syError('SY_ERR_REGISTRY_INVALID', `the artifact is a symbolic link: ${source}`);
  if (st.isFile()) {
    const parts = resolve(source).split(sep);
    const name = parts.pop()!;
    return { root: parts.join(sep) || sep, files: [name] };
  }
  if (!st.isDirectory())
    throw syError('SY_ERR_REGISTRY_INVALID', `not a file or directory: ${source}`);
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isSymbolicLink())
        throw syError(
          'SY_ERR_REGISTRY_INVALID',
          `the artifact contains a symbolic link: ${relative(source, p)}`,
        );
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) files.push(relative(source, p).split(sep).join('/'));
      else
        throw syError(
          'SY_ERR_REGISTRY_INVALID',
          `special file in the artifact: ${relative(source, p)}`,
        );
    }
  };
  await walk(source);
  if (files.length === 0)
    throw syError('SY_ERR_REGISTRY_INVALID', `the artifact is empty: ${source}`);
  files.sort();
  return { root: resolve(source), files };
}

/**
 * The artifact digest: `sha256:` + sha256 of the manifest, one line per file (sorted by path):
 * `<sha256 hex of the file>  <relative path>\n` — the `sha256sum` format, so it can be checked
 * with standard tools.
 */
export async function digestOf(
  root: string,
  files: readonly string[],
): Promise<{ digest: string; size: number }> {
  let manifest = '';
  let size = 0;
  for (const f of files) {
    const p = inside(root, f);
    const st = await lstat(p).catch(() => undefined);
    if (st === undefined || !st.isFile())
      throw syError('SY_ERR_ARTIFACT_TAMPERED', `missing file ${f}`);
    size += st.size;
    manifest += `${await sha256File(p)}  ${f}\n`;
  }
  return { digest: `sha256:${createHash('sha256').update(manifest).digest('hex')}`, size };
}

/** What is signed: domain-separated, so a signature cannot be replayed for another purpose. */
export const signingMessage = (model: string, version: string, digest: string): Buffer =>
  Buffer.from(`switchyard-artifact-v1\n${model}\n${version}\n${digest}\n`, 'utf8');

export function signArtifact(
  privateKey: KeyObject,
  model: string,
  version: string,
  digest: string,
): string {
  return sign(null, signingMessage(model, version, digest), privateKey).toString('base64');
}

export function verifyArtifactSignature(
  publicKey: KeyObject,
  model: string,
  version: string,
  digest: string,
  signature: string,
): boolean {
  try {
    return verify(
      null,
      signingMessage(model, version, digest),
      publicKey,
      Buffer.from(signature, 'base64'),
    );
  } catch {
    return false;
  }
}

/** Parses a pinned Ed25519 public key (PEM); anything else is refused. */
export function parsePublicKey(pem: string): KeyObject {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('signing keys must be Ed25519');
  return key;
}
