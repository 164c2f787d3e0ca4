/** A real MLflow server with the demo model family registered, for tests of the serving plane. */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMlflowServer, trainModels, type MlflowServer } from '../../src/dev/mlflow';
import { freePort } from './tools';

export interface MlflowFixture {
  server: MlflowServer;
  dir: string;
  model: string;
  /** Holdout rows (features, label, entity_id) written by the training script. */
  holdout: Record<string, string>[];
}

export async function startMlflowFixture(model = 'fraud-detector'): Promise<MlflowFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'promote-mlflow-'));
  const server = await startMlflowServer({ dataDir: join(dir, 'mlflow'), port: await freePort() });
  await trainModels({ trackingUri: server.url, model, out: join(dir, 'datasets', model) });
  const [header, ...lines] = readFileSync(join(dir, 'datasets', model, 'holdout.csv'), 'utf8')
    .trim()
    .split('\n');
  const columns = header!.split(',');
  const holdout = lines.map((line) => Object.fromEntries(line.split(',').map((v, i) => [columns[i]!, v])));
  return { server, dir, model, holdout };
}

/** MLflow's dataframe_split body for rows, with the given feature columns. */
export function invocationBody(rows: Record<string, string>[], features: string[]): string {
  return JSON.stringify({
    dataframe_split: { columns: features, data: rows.map((r) => features.map((f) => Number(r[f]))) },
  });
}
