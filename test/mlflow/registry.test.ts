import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NotFoundError } from '../../src/common/errors';
import { startMlflowServer, trainModels, type MlflowServer } from '../../src/dev/mlflow';
import { MlflowRegistry } from '../../src/providers/mlflow/registry';
import { freePort } from '../helpers/tools';

const MODEL = 'fraud-detector';
let server: MlflowServer;
let registry: MlflowRegistry;
let trainOutput: string;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'promote-mlflow-'));
  server = await startMlflowServer({ dataDir: join(dir, 'mlflow'), port: await freePort() });
  trainOutput = await trainModels({ trackingUri: server.url, model: MODEL, out: join(dir, 'data') });
  registry = new MlflowRegistry(server.url);
}, 240_000);

afterAll(async () => server?.stop());

test('training registers v1..v4 with holdout evaluations, and is idempotent', async () => {
  expect(trainOutput).toMatch(/fraud-detector v1: registered as version 1: auc 0\.\d+/);
  expect(trainOutput).toMatch(/fraud-detector: champion -> version 1/);
  const again = await trainModels({
    trackingUri: server.url,
    model: MODEL,
    out: mkdtempSync(join(tmpdir(), 'promote-data-')),
  });
  expect(again.trim().split('\n')).toEqual(
    ['v1', 'v2', 'v3', 'v4'].map((v, i) => `${MODEL} ${v}: already registered as version ${i + 1}`),
  );
}, 120_000);

test('reads a version with its input signature and tags', async () => {
  const v1 = await registry.getVersion(MODEL, '1');
  expect(v1.inputs).toHaveLength(8);
  expect(v1.inputs[0]).toEqual({ name: 'mean_radius', type: 'double' });
  expect(v1.tags['promote.version_label']).toBe('v1');
  const v4 = await registry.getVersion(MODEL, '4');
  expect(v4.inputs.map((i) => i.name)).toContain('device_fingerprint');
  await expect(registry.getVersion(MODEL, '99')).rejects.toThrow(
    new NotFoundError('MLflow has no version 99 of model fraud-detector'),
  );
});

test('reads, moves and deletes aliases; restoring puts them back exactly', async () => {
  expect(await registry.getAlias(MODEL, 'champion')).toBe('1');
  expect(await registry.getAlias(MODEL, 'challenger')).toBeNull();
  await registry.setAlias(MODEL, 'challenger', '2');
  expect(await registry.getAlias(MODEL, 'challenger')).toBe('2');
  await registry.setAlias(MODEL, 'champion', '2');
  expect(await registry.getAlias(MODEL, 'champion')).toBe('2');
  // Rollback: back to exactly what was there, including "no alias".
  await registry.setAlias(MODEL, 'champion', '1');
  await registry.setAlias(MODEL, 'challenger', null);
  await registry.setAlias(MODEL, 'challenger', null);
  expect(await registry.getAlias(MODEL, 'champion')).toBe('1');
  expect(await registry.getAlias(MODEL, 'challenger')).toBeNull();
});

test('writes tags recording the promotion', async () => {
  await registry.setTags(MODEL, '2', {
    'promotion.id': 'promotion-fraud-detector',
    'promotion.outcome': 'rolled_back',
  });
  const v2 = await registry.getVersion(MODEL, '2');
  expect(v2.tags).toMatchObject({
    'promotion.id': 'promotion-fraud-detector',
    'promotion.outcome': 'rolled_back',
    'promote.version_label': 'v2',
  });
});
