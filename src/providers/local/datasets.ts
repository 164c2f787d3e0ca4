/** Holdout datasets written by the training script: <dir>/<model>/holdout.csv (features, label, entity_id). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NotFoundError } from '../../common/errors';

export interface Holdout {
  columns: string[];
  rows: Record<string, string>[];
}

export class Datasets {
  private readonly cache = new Map<string, Holdout>();

  constructor(readonly dir: string) {}

  holdout(model: string): Holdout {
    const cached = this.cache.get(model);
    if (cached) return cached;
    const file = join(this.dir, model, 'holdout.csv');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      throw new NotFoundError(`no holdout dataset for ${model} at ${file} (the training script writes it)`);
    }
    const [header, ...lines] = text.trim().split('\n');
    const columns = header!.split(',');
    const rows = lines.map((line) => Object.fromEntries(line.split(',').map((v, i) => [columns[i]!, v])));
    const holdout = { columns, rows };
    this.cache.set(model, holdout);
    return holdout;
  }
}

/** MLflow's dataframe_split body for rows, in the given feature order. */
export function invocationBody(rows: Record<string, string>[], features: string[]): string {
  return JSON.stringify({
    dataframe_split: { columns: features, data: rows.map((r) => features.map((f) => Number(r[f]))) },
  });
}
