/**
 * Secrets of the embedded stack, one set per data folder: the gateway's admin token and its label
 * ingest token. Each is random, created once with mode 0600 and reused by later starts; nothing
 * has a fixed default.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export interface StackTokens {
  adminToken: string;
  adminTokenFile: string;
  ingestToken: string;
  ingestTokenFile: string;
}

/**
 * The token in `file`, created (32 random bytes, base64url, mode 0600) if missing. A file readable
 * by others is narrowed to 0600 (and `say` tells); an empty or unreadable one is an error.
 */
export function ensureToken(file: string, say: (line: string) => void = () => undefined): string {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(file, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    chmodSync(file, 0o600);
    say(`${file} was readable by others (mode ${mode.toString(8)}); now 0600`);
  }
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16)
    throw new Error(`${file} holds no usable token (fewer than 16 characters); delete it to make a new one`);
  return token;
}

/** The gateway's tokens of a data folder: `<data>/gateway/admin-token` and `ingest-token`. */
export function stackTokens(dataDir: string, say?: (line: string) => void): StackTokens {
  const dir = join(resolve(dataDir), 'gateway');
  const adminTokenFile = join(dir, 'admin-token');
  const ingestTokenFile = join(dir, 'ingest-token');
  return {
    adminToken: ensureToken(adminTokenFile, say),
    adminTokenFile,
    ingestToken: ensureToken(ingestTokenFile, say),
    ingestTokenFile,
  };
}
