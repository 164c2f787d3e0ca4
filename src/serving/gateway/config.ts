/** The gateway process's settings from its environment; every problem is a clear message at start. */
import { availableParallelism } from 'node:os';
import { readSecret, type Env } from '../../common/secret';
import { parseDuration } from '../../plan/duration';
import { DEFAULT_RETENTION_MS } from './prediction-log';

export { readSecret };

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
  /** Gateway processes serving requests (1: a single process; more: a primary and that many workers). */
  processes: number;
}

/** PROMOTE_GATEWAY_PROCESSES: 1..64; default one per core, at most 8. */
export function readProcesses(env: Env): number {
  const raw = env.PROMOTE_GATEWAY_PROCESSES;
  if (raw === undefined || raw.trim() === '') return Math.min(availableParallelism(), 8);
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new Error(`PROMOTE_GATEWAY_PROCESSES: "${raw.slice(0, 40)}" is not a whole number from 1 to 64`);
  return n;
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
    processes: readProcesses(env),
  };
}
