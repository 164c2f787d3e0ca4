/**
 * `promote dev up` cleans up after itself: the real `bin/promote dev up` on free ports with a data
 * folder of its own is killed with SIGKILL; its children die with it (or are stopped by the next
 * start, which says so), model servers are adopted by the next start, and a SIGINT to the second
 * start leaves no process of either behind.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive, groupAlive, groupMembers } from '../../src/common/processes';
import type { PidRecord } from '../../src/dev/children';
import { pythonEnv } from '../../src/dev/mlflow';
import type { ServerRecord } from '../../src/serving/supervisor';
import { freePort, temporalCliPath } from '../helpers/tools';

const ROOT = join(__dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'promote-devup-'));
const started: ChildProcess[] = [];
let env: NodeJS.ProcessEnv;

interface Up {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
}

function devUp(): Up {
  const child = spawn(join(ROOT, 'bin/promote'), ['dev', 'up', '--data', dir, '--traffic', '5'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so afterAll can clean up whatever a failed test leaves.
    detached: true,
  });
  started.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exited };
}

async function until(what: string, ok: () => boolean, up: Up | null, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; stderr: ${up?.err().slice(-2000) ?? ''}`);
    if (up && up.child.exitCode !== null)
      throw new Error(`dev up exited with ${up.child.exitCode} before ${what}: ${up.err().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const ready = (up: Up) =>
  until('the summary', () => up.out().includes('Ctrl-C stops everything'), up, 300_000);

function pidFiles(): Record<string, PidRecord> {
  const runDir = join(dir, 'run');
  return Object.fromEntries(
    readdirSync(runDir)
      .filter((f) => f.endsWith('.pid') && f !== 'promote.pid')
      .map((f) => [f.replace('.pid', ''), JSON.parse(readFileSync(join(runDir, f), 'utf8')) as PidRecord]),
  );
}

function modelServers(): ServerRecord[] {
  return Object.values(
    JSON.parse(readFileSync(join(dir, 'servers', 'servers.json'), 'utf8')) as Record<string, ServerRecord>,
  );
}

beforeAll(async () => {
  env = {
    ...process.env,
    TEMPORAL_CLI_PATH: temporalCliPath(),
    PROMOTE_PYTHON_ENV: pythonEnv(),
    PROMOTE_WORKFLOW_BUNDLE: process.env.PROMOTE_TEST_BUNDLE,
    PROMOTE_DEV_TEMPORAL_PORT: String(await freePort()),
    PROMOTE_DEV_UI_PORT: String(await freePort()),
    PROMOTE_DEV_MLFLOW_PORT: String(await freePort()),
    PROMOTE_DEV_GATEWAY_PORT: String(await freePort()),
    PROMOTE_GATEWAY_TOKEN: 'a-token-from-the-environment-that-dev-up-must-not-use',
    LOG_LEVEL: 'warn',
  };
});

afterAll(() => {
  // Only on failure is anything left: stop the test's own process groups and what they recorded.
  const groups = new Set<number>();
  for (const c of started) if (c.pid) groups.add(c.pid);
  if (existsSync(join(dir, 'run'))) for (const r of Object.values(pidFiles())) groups.add(r.pgid);
  if (existsSync(join(dir, 'servers', 'servers.json'))) for (const r of modelServers()) groups.add(r.pid);
  for (const g of groups) {
    if (!groupAlive(g)) continue;
    try {
      process.kill(-g, 'SIGCONT');
      process.kill(-g, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

test('a crashed dev up leaves nothing that blocks the next start, which says what it stopped and adopted', async () => {
  // ---- first start ----
  const first = devUp();
  await ready(first);
  const before = pidFiles();
  expect(Object.keys(before).sort()).toEqual(['gateway', 'mlflow', 'temporal']);
  const [server] = modelServers();
  expect(server).toMatchObject({ model: 'fraud-detector', version: '1' });
  expect(alive(server!.pid)).toBe(true);

  // The tokens: random, mode 0600, named in the summary by path only.
  const tokenFile = join(dir, 'gateway', 'admin-token');
  const token = readFileSync(tokenFile, 'utf8').trim();
  expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
  expect(statSync(join(dir, 'gateway', 'ingest-token')).mode & 0o777).toBe(0o600);
  expect(first.out()).toContain(`admin token in ${tokenFile}`);
  expect(first.out() + first.err()).not.toContain(token);
  // The gateway answers its admin API with that token, not with one from the environment.
  const gateway = `http://127.0.0.1:${env.PROMOTE_DEV_GATEWAY_PORT}`;
  const admin = (t: string) =>
    fetch(`${gateway}/admin/routes/fraud-detector`, { headers: { authorization: `Bearer ${t}` } });
  expect((await admin(token)).status).toBe(200);
  expect((await admin(env.PROMOTE_GATEWAY_TOKEN!)).status).toBe(401);

  // A second start on the folder while the first runs is refused and touches nothing.
  const again = spawnSync(join(ROOT, 'bin/promote'), ['dev', 'up', '--data', dir], {
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(again.status).toBe(3);
  expect(again.stderr).toContain(`another promote (pid ${first.child.pid}) is running on ${dir}`);
  expect(pidFiles()).toEqual(before);
  expect((await admin(token)).status).toBe(200);

  // A child that does not die with promote, as one stuck in uninterruptible work would not:
  // MLflow's whole group is stopped (SIGSTOP), so the SIGTERM promote's death sends it waits.
  process.kill(-before.mlflow!.pgid, 'SIGSTOP');
  process.kill(first.child.pid!, 'SIGKILL');
  await first.exited;

  // The others die with their parent (setpriv --pdeathsig); model servers stay on purpose.
  await until(
    'the Temporal server and the gateway to die with dev up',
    () => !groupAlive(before.temporal!.pgid) && !groupAlive(before.gateway!.pgid),
    null,
    20_000,
  );
  expect(alive(before.mlflow!.pid)).toBe(true);
  expect(alive(server!.pid)).toBe(true);

  // ---- second start on the same folder ----
  const second = devUp();
  await ready(second);
  expect(second.err()).toContain(
    `stopped a leftover MLflow server (pid ${before.mlflow!.pid}) from an earlier run`,
  );
  expect(second.err()).toContain(
    `adopted the model server of fraud-detector/1 (pid ${server!.pid}, port ${server!.port}) from an earlier run`,
  );
  expect(groupAlive(before.mlflow!.pgid)).toBe(false);
  // The token was created once and is reused.
  expect(readFileSync(tokenFile, 'utf8').trim()).toBe(token);
  expect((await admin(token)).status).toBe(200);

  // ---- SIGINT stops everything ----
  const after = pidFiles();
  const groups = [...Object.values(after).map((r) => r.pgid), ...modelServers().map((r) => r.pid)];
  const pids = [second.child.pid!, ...groups.flatMap((g) => groupMembers(g))];
  expect(pids.length).toBeGreaterThan(groups.length); // the leaders' own children are counted too
  process.kill(second.child.pid!, 'SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    second.exited,
    new Promise<string>((r) => (timer = setTimeout(() => r('still running after 60s'), 60_000))),
  ]);
  clearTimeout(timer);
  expect(code).toBe(0);
  expect(pids.filter((pid) => alive(pid))).toEqual([]);
  expect(readdirSync(join(dir, 'run')).filter((f) => f.endsWith('.pid'))).toEqual([]);
}, 600_000);
