/** Secrets from the environment: a value, or the file that holds it (for mounted secrets). */
import { readFileSync } from 'node:fs';

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * A secret from `<NAME>` or the file named by `<NAME>_FILE` (read once, trimmed). Throws when
 * neither or both are set, or the file cannot be read or is empty.
 */
export function readSecret(env: Env, name: string, what: string): string {
  const secret = readOptionalSecret(env, name, what);
  if (secret === undefined) throw new Error(`${name} or ${name}_FILE is required (${what})`);
  return secret;
}

/** As readSecret, but undefined when neither `<NAME>` nor `<NAME>_FILE` is set. */
export function readOptionalSecret(env: Env, name: string, what: string): string | undefined {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (direct && file) throw new Error(`set ${name} or ${name}_FILE, not both (${what})`);
  if (direct) return direct.trim();
  if (!file) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new Error(`${name}_FILE: cannot read ${file}: ${(err as Error).message}`);
  }
  if (!text) throw new Error(`${name}_FILE: ${file} is empty`);
  return text;
}
