/**
 * Ports of the embedded stack. Defaults are the well-known ones; each can be moved with an
 * environment variable (tests run the stack on free ports):
 *   PROMOTE_DEV_TEMPORAL_PORT (7233), PROMOTE_DEV_UI_PORT (8233), PROMOTE_DEV_MLFLOW_PORT (5050),
 *   PROMOTE_DEV_GATEWAY_PORT (8780).
 */
import { InvalidInputError } from '../common/errors';

export interface DevPorts {
  temporal: number;
  ui: number;
  mlflow: number;
  gateway: number;
}

function port(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < 1 || value > 65535)
    throw new InvalidInputError(`${name} must be a port number (1-65535), got "${raw.slice(0, 40)}"`);
  return value;
}

export function devPorts(env: NodeJS.ProcessEnv = process.env): DevPorts {
  return {
    temporal: port(env, 'PROMOTE_DEV_TEMPORAL_PORT', 7233),
    ui: port(env, 'PROMOTE_DEV_UI_PORT', 8233),
    mlflow: port(env, 'PROMOTE_DEV_MLFLOW_PORT', 5050),
    gateway: port(env, 'PROMOTE_DEV_GATEWAY_PORT', 8780),
  };
}
