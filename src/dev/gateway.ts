/**
 * The gateway of the embedded stack as its own process (src/serving/gateway/main.ts), configured
 * by its environment contract (docs/fail-safe.md): a crash of promote does not take routing state
 * with it, and the gateway's lease keeps working while the worker is gone.
 */
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { plainLauncher, type Launched, type Launcher } from './children';
import type { StackTokens } from './tokens';

export interface GatewayProcess {
  url: string;
  launched: Launched;
  stop(): Promise<void>;
}

/** How to run the gateway's main: the built file next to this one, or the source through tsx. */
function gatewayCommand(): { command: string; args: string[] } {
  const built = resolve(__dirname, '../serving/gateway/main.js');
  if (existsSync(built)) return { command: process.execPath, args: [built] };
  const source = resolve(__dirname, '../serving/gateway/main.ts');
  return { command: process.execPath, args: ['--import', 'tsx', source] };
}

export async function startGatewayProcess(opts: {
  /** The gateway's state folder (routes, leases, prediction log, tokens): <data>/gateway. */
  stateDir: string;
  port: number;
  host?: string;
  tokens: StackTokens;
  launcher?: Launcher;
  /** How long the gateway gets to answer /health, ms. Default 30000. */
  startTimeoutMs?: number;
}): Promise<GatewayProcess> {
  const host = opts.host ?? '127.0.0.1';
  const stateDir = resolve(opts.stateDir);
  const url = `http://${host}:${opts.port}`;
  const taken = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) }).then(
    () => true,
    () => false,
  );
  if (taken)
    throw new Error(`port ${opts.port} on ${host} is already in use (a gateway from an earlier run?)`);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const logFile = join(stateDir, 'gateway.log');
  const log = openSync(logFile, 'a');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PROMOTE_GATEWAY_PORT: String(opts.port),
    PROMOTE_GATEWAY_HOST: host,
    PROMOTE_GATEWAY_STATE_DIR: stateDir,
    PROMOTE_PREDICTION_LOG: `sqlite:${join(stateDir, 'predictions.db')}`,
    PROMOTE_GATEWAY_TOKEN_FILE: opts.tokens.adminTokenFile,
    PROMOTE_INGEST_TOKEN_FILE: opts.tokens.ingestTokenFile,
  };
  // The token files are the only source: a token inherited from the caller's environment is not.
  delete env.PROMOTE_GATEWAY_TOKEN;
  delete env.PROMOTE_INGEST_TOKEN;
  const { command, args } = gatewayCommand();
  const launched = (opts.launcher ?? plainLauncher)({
    name: 'gateway',
    label: 'gateway',
    command,
    args,
    env,
    stdio: ['ignore', log, log],
  });
  const state: { exited: string | null } = { exited: null };
  launched.process.on('exit', (code, signal) => (state.exited = `exited with ${signal ?? code}`));
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  for (;;) {
    if (state.exited) {
      await launched.stop();
      throw new Error(`the gateway ${state.exited}; see ${logFile}`);
    }
    const ok = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      await launched.stop();
      throw new Error(`the gateway at ${url} did not answer /health in time; see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, launched, stop: () => launched.stop() };
}
