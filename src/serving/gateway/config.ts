/** The gateway process's settings from its environment; every problem is a clear message at start. */
import { readFileSync } from 'node:fs';
import { parseDuration } from '../../plan/duration';
import { DEFAULT_RETENTION_MS } from './prediction-log';

type Env = Readonly<Record<string, string | undefined>>;

/**
 * A secret from `<NAME>` or the file named by `<NAME>_FILE` (read once, trimmed). Throws when
 * neither or both are set, or the file cannot be read or is empty.
 */
export function readSecret(env: Env, name: string, what: string): string {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (direct && file) throw new Error(`set ${name} or ${name}_FILE, not both (${what})`);
  if (direct) return direct.trim();
  if (!file) throw new Error(`${name} or ${name}_FILE is required (${what})`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new Error(`${name}_FILE: cannot read ${file}: ${(err as Error).message}`);
  }
  if (!text) throw new Error(`${name}_FILE: ${file} is empty`);
  return text;
}

/** PROMOTE_PREDICTION_RETENTION as ms (a duration such as 30d; default 30 days). */
export function readRetention(env: Env): number {
  const raw = env.PROMOTE_PREDICTION_RETENTION;
  if (raw === undefined || raw === '') return DEFAULT_RETENTION_MS;
  let ms: number;
  try {
    ms = parseDuration(raw.trim());
  } catch {
    throw new Error(`PROMOTE_PREDICTION_RETENTION: "${raw}" is not a duration (e.g. 30d, 12h)`);
  }
  if (ms < 60_000) throw new Error(`PROMOTE_PREDICTION_RETENTION: ${raw} is shorter than a minute`);
  return ms;
}

export interface GatewayConfig {
  adminToken: string;
  ingestToken: string;
  retentionMs: number;
  stateDir: string;
  predictionLog: string;
  port: number;
  host: string;
}

export function readConfig(env: Env): GatewayConfig {
  const adminToken = readSecret(env, 'PROMOTE_GATEWAY_TOKEN', 'the bearer token of the admin API');
  const ingestToken = readSecret(env, 'PROMOTE_INGEST_TOKEN', 'the bearer token of the labels endpoint');
  if (adminToken === ingestToken)
    throw new Error(
      'PROMOTE_INGEST_TOKEN must differ from PROMOTE_GATEWAY_TOKEN (a label source must not change routes)',
    );
  const stateDir = env.PROMOTE_GATEWAY_STATE_DIR ?? '.data/gateway';
  const port = Number(env.PROMOTE_GATEWAY_PORT ?? 8780);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`PROMOTE_GATEWAY_PORT: "${env.PROMOTE_GATEWAY_PORT}" is not a port`);
  return {
    adminToken,
    ingestToken,
    retentionMs: readRetention(env),
    stateDir,
    predictionLog: env.PROMOTE_PREDICTION_LOG ?? `sqlite:${stateDir}/predictions.db`,
    port,
    host: env.PROMOTE_GATEWAY_HOST ?? '127.0.0.1',
  };
}
