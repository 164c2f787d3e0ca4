/**
 * MLflow for the embedded stack: the tracking + registry server (SQLite backend, local artifact
 * store proxied by the server) and the training script that registers the demo models. Both run
 * from the Python environment that scripts/lib.sh creates (PROMOTE_PYTHON_ENV).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { plainLauncher, type Launcher } from './children';

export function pythonEnv(): string {
  const env = process.env.PROMOTE_PYTHON_ENV;
  if (!env)
    throw new Error(
      'PROMOTE_PYTHON_ENV is not set: bin/promote and npm test create the Python environment and set it',
    );
  return env;
}

export interface MlflowServer {
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function startMlflowServer(opts: {
  dataDir: string;
  port: number;
  host?: string;
  /** How the server process is started; default a plain child process. */
  launcher?: Launcher;
}): Promise<MlflowServer> {
  const host = opts.host ?? '127.0.0.1';
  const dataDir = resolve(opts.dataDir);
  const taken = await fetch(`http://${host}:${opts.port}/health`, { signal: AbortSignal.timeout(1000) }).then(
    () => true,
    () => false,
  );
  if (taken)
    throw new Error(`port ${opts.port} on ${host} is already in use (an MLflow server from an earlier run?)`);
  mkdirSync(dataDir, { recursive: true });
  const log = openSync(join(dataDir, 'server.log'), 'a');
  const launched = (opts.launcher ?? plainLauncher)({
    name: 'mlflow',
    label: 'MLflow server',
    command: join(pythonEnv(), 'bin', 'mlflow'),
    args: [
      'server',
      '--backend-store-uri',
      `sqlite:///${join(dataDir, 'mlflow.db')}`,
      '--artifacts-destination',
      join(dataDir, 'artifacts'),
      '--host',
      host,
      '--port',
      String(opts.port),
      '--workers',
      '1',
    ],
    stdio: ['ignore', log, log],
    env: { ...process.env, MLFLOW_TRACKING_URI: '' },
  });
  const child = launched.process;
  const url = `http://${host}:${opts.port}`;
  const state: { exited: string | null } = { exited: null };
  child.on('exit', (code, signal) => (state.exited = `exited with ${signal ?? code}`));
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (state.exited) {
      await launched.stop();
      throw new Error(`the MLflow server ${state.exited}; see ${join(dataDir, 'server.log')}`);
    }
    try {
      if ((await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      await launched.stop();
      throw new Error(
        `the MLflow server at ${url} did not answer within 90s; see ${join(dataDir, 'server.log')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, process: child, stop: () => launched.stop() };
}

/** Runs python/train.py: trains and registers the demo model family (skips existing versions). */
export function trainModels(opts: { trackingUri: string; model: string; out: string }): Promise<string> {
  const script = resolve(__dirname, '../../python/train.py');
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      join(pythonEnv(), 'bin', 'python'),
      [script, '--model', opts.model, '--out', opts.out],
      {
        env: { ...process.env, MLFLOW_TRACKING_URI: opts.trackingUri, PYTHONWARNINGS: 'ignore' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) =>
      code === 0
        ? resolvePromise(out)
        : reject(
            new Error(`python/train.py exited with ${code}: ${err.trim().split('\n').slice(-3).join(' ')}`),
          ),
    );
  });
}
