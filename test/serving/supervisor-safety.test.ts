/**
 * The supervisor's safety rules without MLflow: the model server environment is an allow-list,
 * and a recorded pid is adopted or signalled only while it still runs the recorded server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { alive, groupAlive } from '../../src/common/processes';
import { modelServerEnv, ModelServerSupervisor, type ServerRecord } from '../../src/serving/supervisor';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.pid && groupAlive(c.pid)) process.kill(-c.pid, 'SIGKILL');
});

test('the model server environment: PATH with the venv first, the tracking URI, locale, home, temp; nothing else', () => {
  const env = modelServerEnv(
    {
      PATH: '/usr/bin:/bin',
      HOME: '/home/p',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      TMPDIR: '/tmp/x',
      TZ: 'UTC',
      MLFLOW_TRACKING_URI: 'http://elsewhere',
      MLFLOW_TRACKING_TOKEN: 'registry-secret',
      PROMOTE_GATEWAY_TOKEN: 's',
      PROMOTE_INGEST_TOKEN: 's',
      TEMPORAL_API_KEY: 's',
      TEMPORAL_TLS_CLIENT_KEY_PATH: '/k',
      PGPASSWORD: 's',
      DATABASE_URL: 's',
      AWS_SECRET_ACCESS_KEY: 's',
      AWS_ACCESS_KEY_ID: 's',
      GITHUB_TOKEN: 's',
      PYTHONPATH: '/evil',
      LD_PRELOAD: '/evil.so',
    },
    '/venv',
    'http://127.0.0.1:5050',
  );
  expect(env).toEqual({
    PATH: '/venv/bin:/usr/bin:/bin',
    MLFLOW_TRACKING_URI: 'http://127.0.0.1:5050',
    HOME: '/home/p',
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    TMPDIR: '/tmp/x',
    TZ: 'UTC',
  });
  expect(modelServerEnv({}, '/venv', 'u').PATH).toBe('/venv/bin:/usr/local/bin:/usr/bin:/bin');
});

/** A process in its own group whose argv is `args` (sh stays the process: `; :` prevents exec). */
function fakeProcess(...args: string[]): ChildProcess {
  const child = spawn('sh', ['-c', 'sleep 120; :', ...args], { detached: true, stdio: 'ignore' });
  children.push(child);
  return child;
}

function supervisorWith(records: ServerRecord[]): ModelServerSupervisor {
  const stateDir = mkdtempSync(join(tmpdir(), 'promote-servers-'));
  writeFileSync(
    join(stateDir, 'servers.json'),
    JSON.stringify(Object.fromEntries(records.map((r) => [`${r.model}/${r.version}`, r]))),
  );
  return new ModelServerSupervisor({
    stateDir,
    trackingUri: 'http://127.0.0.1:1',
    pythonEnv: '/nonexistent',
    logger: pino({ level: 'silent' }),
    monitorMs: 0,
  });
}

const record = (pid: number, version: string, port: number): ServerRecord => ({
  model: 'm',
  version,
  port,
  pid,
  startedAt: new Date().toISOString(),
  restarts: 0,
});

test('reconcile adopts a recorded server that still runs its version and reports a reused pid as gone', async () => {
  const server = fakeProcess('mlflow', 'models', 'serve', '-m', 'models:/m/1', '-p', '40001');
  const stranger = fakeProcess('something', 'else');
  const dead = spawn('true');
  await new Promise((r) => dead.on('exit', r));
  await new Promise((r) => setTimeout(r, 200));
  const supervisor = supervisorWith([
    record(server.pid!, '1', 40001),
    record(stranger.pid!, '2', 40002),
    record(dead.pid!, '3', 40003),
  ]);
  const { adopted, gone } = supervisor.reconcile();
  expect(adopted.map((r) => r.version)).toEqual(['1']);
  expect(gone.map((r) => r.version).sort()).toEqual(['2', '3']);

  // Decommissioning the reused pid's record leaves that process alone; the real one is stopped.
  await supervisor.decommission('m', '2');
  expect(alive(stranger.pid!)).toBe(true);
  await supervisor.decommission('m', '1');
  expect(groupAlive(server.pid!)).toBe(false);
  expect(supervisor.list().map((r) => r.version)).toEqual(['3']);
  supervisor.close();
});
