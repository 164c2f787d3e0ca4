import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { environ, groupMembers } from '../../src/common/processes';
import { pythonEnv } from '../../src/dev/mlflow';
import { ModelServerSupervisor } from '../../src/serving/supervisor';
import { invocationBody, startMlflowFixture, type MlflowFixture } from '../helpers/mlflow';

let mlflow: MlflowFixture;
let stateDir: string;
const supervisors: ModelServerSupervisor[] = [];

function supervisor(): ModelServerSupervisor {
  const s = new ModelServerSupervisor({
    stateDir,
    trackingUri: mlflow.server.url,
    pythonEnv: pythonEnv(),
    logger: pino({ level: 'silent' }),
    monitorMs: 500,
  });
  supervisors.push(s);
  return s;
}

/** Processes serving `models:/<model>/<version>` right now. */
function servingProcesses(version: string): number {
  const out = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((l) => l.includes('models serve') && l.includes(`models:/${mlflow.model}/${version} `)).length;
}

beforeAll(async () => {
  // A model name of its own, so servers of other runs on this machine are not counted.
  mlflow = await startMlflowFixture(`sup-${process.pid}`);
  stateDir = mkdtempSync(join(tmpdir(), 'promote-servers-'));
}, 240_000);

afterAll(async () => {
  await supervisors[0]?.stopAll();
  supervisors.forEach((s) => s.close());
  await mlflow?.server.stop();
});

test('deploys a version on a free port and serves predictions from the registered model', async () => {
  const record = await supervisor().deploy(mlflow.model, '1');
  const features = Object.keys(mlflow.holdout[0]!)
    .filter((c) => c !== 'entity_id' && c !== 'label')
    .slice(0, 8);
  const response = await fetch(`http://127.0.0.1:${record.port}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: invocationBody(mlflow.holdout.slice(0, 5), features),
  });
  expect(response.status).toBe(200);
  const { predictions } = (await response.json()) as { predictions: number[] };
  expect(predictions).toHaveLength(5);
  for (const p of predictions) {
    expect(p).toBeGreaterThanOrEqual(0);
    expect(p).toBeLessThanOrEqual(1);
  }
}, 120_000);

test('deploying again, or from a restarted worker, adopts the running server instead of starting another', async () => {
  const first = supervisors[0]!.get(mlflow.model, '1')!;
  expect(await supervisors[0]!.deploy(mlflow.model, '1')).toEqual(first);
  supervisors[0]!.close();
  const restarted = supervisor();
  expect(await restarted.deploy(mlflow.model, '1')).toEqual(first);
  expect(servingProcesses('1')).toBe(1);
}, 60_000);

test('a server that dies is restarted by the monitor', async () => {
  const s = supervisors[supervisors.length - 1]!;
  const before = s.get(mlflow.model, '1')!;
  process.kill(-before.pid, 'SIGKILL');
  const deadline = Date.now() + 60_000;
  let after = s.get(mlflow.model, '1')!;
  while ((after.pid === before.pid || !(await s.healthy(after))) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    after = s.get(mlflow.model, '1')!;
  }
  expect(after.pid).not.toBe(before.pid);
  expect(after.restarts).toBe(before.restarts + 1);
  expect(await s.healthy(after)).toBe(true);
  expect(servingProcesses('1')).toBe(1);
}, 90_000);

test('decommission stops the server and is idempotent', async () => {
  const s = supervisors[supervisors.length - 1]!;
  const record = s.get(mlflow.model, '1')!;
  await s.decommission(mlflow.model, '1');
  await s.decommission(mlflow.model, '1');
  expect(s.get(mlflow.model, '1')).toBeUndefined();
  expect(await s.healthy(record)).toBe(false);
  expect(servingProcesses('1')).toBe(0);
}, 60_000);

test('a model server starts with a minimal environment: no secret of the worker reaches candidate code', async () => {
  const secrets = {
    PROMOTE_GATEWAY_TOKEN: 'secret-gateway-token',
    PROMOTE_INGEST_TOKEN: 'secret-ingest-token',
    TEMPORAL_API_KEY: 'secret-temporal-key',
    PGPASSWORD: 'secret-pg-password',
    DATABASE_URL: 'postgres://promote:secret@127.0.0.1/promote',
    AWS_SECRET_ACCESS_KEY: 'secret-aws-key',
  };
  const saved = { ...process.env };
  Object.assign(process.env, secrets);
  let record;
  try {
    record = await supervisors[supervisors.length - 1]!.deploy(mlflow.model, '2');
  } finally {
    for (const name of Object.keys(secrets)) delete process.env[name];
    Object.assign(process.env, saved);
  }
  expect(await supervisors[supervisors.length - 1]!.healthy(record)).toBe(true);
  // Every process of the server's group: mlflow's launcher and the uvicorn it execs.
  const members = groupMembers(record.pid);
  expect(members.length).toBeGreaterThanOrEqual(2);
  for (const pid of members) {
    const entries = environ(pid)!;
    const names = entries.map((e) => e.slice(0, e.indexOf('=')));
    for (const name of Object.keys(secrets)) expect(names).not.toContain(name);
    for (const value of Object.values(secrets)) expect(entries.join('\n')).not.toContain(value);
  }
  // The launcher's own environment is exactly the allowed one (mlflow adds its own to uvicorn's).
  const launcher = environ(record.pid)!.map((e) => e.slice(0, e.indexOf('=')));
  for (const name of launcher)
    expect(name).toMatch(/^(PATH|MLFLOW_TRACKING_URI|HOME|LANG|LANGUAGE|TMPDIR|TZ|LC_\w+)$/);
  await supervisors[supervisors.length - 1]!.decommission(mlflow.model, '2');
}, 120_000);
