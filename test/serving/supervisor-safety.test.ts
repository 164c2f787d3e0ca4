/**
 * The supervisor's safety rules without MLflow: the model server environment is an allow-list,
 * a recorded pid is adopted or signalled only while it still runs the recorded server, and two
 * workers on one state folder act on servers.json as it is, not on stale copies.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
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

/**
 * A Python environment whose `mlflow` records each start (its pid in `<env>/spawned`) and then
 * sleeps with the argv of a model server; it never answers /ping.
 */
function fakePythonEnv(): { dir: string; spawned: () => number[] } {
  const dir = mkdtempSync(join(tmpdir(), 'promote-fake-venv-'));
  mkdirSync(join(dir, 'bin'));
  writeFileSync(
    join(dir, 'bin', 'mlflow'),
    `#!/bin/sh\necho $$ >> "${dir}/spawned"\nexec sh -c 'sleep 120; :' "$@"\n`,
    { mode: 0o755 },
  );
  const spawned = () => {
    try {
      return readFileSync(join(dir, 'spawned'), 'utf8').trim().split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  return { dir, spawned };
}

function supervisorOn(stateDir: string, pythonEnv: string): ModelServerSupervisor {
  return new ModelServerSupervisor({
    stateDir,
    trackingUri: 'http://127.0.0.1:1',
    pythonEnv,
    logger: pino({ level: 'silent' }),
    monitorMs: 0,
    startTimeoutMs: 300,
  });
}

const recorded = (stateDir: string) =>
  Object.keys(JSON.parse(readFileSync(join(stateDir, 'servers.json'), 'utf8')) as object);

describe('two workers on one state folder (a restart overlapping the old worker)', () => {
  const venvs: ReturnType<typeof fakePythonEnv>[] = [];
  afterAll(() => {
    for (const pid of venvs.flatMap((v) => v.spawned())) if (groupAlive(pid)) process.kill(-pid, 'SIGKILL');
  });

  test("one worker's monitor does not restart a server the other has decommissioned", async () => {
    const venv = fakePythonEnv();
    venvs.push(venv);
    const server = fakeProcess('mlflow', 'models', 'serve', '-m', 'models:/m/1', '-p', '40011');
    const stateDir = mkdtempSync(join(tmpdir(), 'promote-servers-'));
    writeFileSync(join(stateDir, 'servers.json'), JSON.stringify({ 'm/1': record(server.pid!, '1', 40011) }));
    const old = supervisorOn(stateDir, venv.dir);
    const current = supervisorOn(stateDir, venv.dir);
    await current.decommission('m', '1');
    expect(groupAlive(server.pid!)).toBe(false);
    // The old worker still remembers the server; its monitor finds the process gone.
    await old.heal();
    expect(venv.spawned()).toEqual([]);
    expect(recorded(stateDir)).toEqual([]);
  });

  test('a deploy adopts the server the other worker started instead of starting a second one', async () => {
    const venv = fakePythonEnv();
    venvs.push(venv);
    const stateDir = mkdtempSync(join(tmpdir(), 'promote-servers-'));
    const current = supervisorOn(stateDir, venv.dir);
    // The other worker starts m/1 afterwards: a live process answering /ping on its port.
    const ping = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => ping.listen(0, '127.0.0.1', r));
    const port = (ping.address() as AddressInfo).port;
    const server = fakeProcess('mlflow', 'models', 'serve', '-m', 'models:/m/1', '-p', String(port));
    writeFileSync(join(stateDir, 'servers.json'), JSON.stringify({ 'm/1': record(server.pid!, '1', port) }));
    try {
      const deployed = await current.deploy('m', '1');
      expect(deployed.pid).toBe(server.pid);
      expect(venv.spawned()).toEqual([]);
    } finally {
      ping.close();
    }
  });

  test('a decommission while the monitor restarts the server wins: nothing is started', async () => {
    const venv = fakePythonEnv();
    venvs.push(venv);
    const dead = spawn('true');
    await new Promise((r) => dead.on('exit', r));
    const stateDir = mkdtempSync(join(tmpdir(), 'promote-servers-'));
    writeFileSync(join(stateDir, 'servers.json'), JSON.stringify({ 'm/1': record(dead.pid!, '1', 40012) }));
    const supervisor = supervisorOn(stateDir, venv.dir);
    // The monitor's restart first checks the recorded port; the decommission comes meanwhile.
    const healing = supervisor.heal();
    await supervisor.decommission('m', '1');
    await healing;
    expect(venv.spawned()).toEqual([]);
    expect(recorded(stateDir)).toEqual([]);
  });
});
