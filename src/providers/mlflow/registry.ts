/**
 * The MLflow Model Registry behind the Registry interface: versions and their input signatures,
 * aliases (champion, challenger), and tags recording the promotion.
 */
import { parse } from 'yaml';
import { NotFoundError } from '../../common/errors';
import type { FeatureSpec, ModelVersion, Registry } from '../types';
import { MlflowError, MlflowRest } from './rest';

/** MLflow answers a missing alias with INVALID_PARAMETER_VALUE "... alias X not found", not a 404. */
function aliasMissing(err: unknown): boolean {
  return (
    err instanceof NotFoundError || (err instanceof MlflowError && /alias .* not found/i.test(err.message))
  );
}

interface MlflowModelVersion {
  name: string;
  version: string;
  run_id?: string;
  source?: string;
  model_id?: string;
  tags?: { key: string; value: string }[];
  aliases?: string[];
}

interface MlflowModelFile {
  signature?: { inputs?: string };
}

export class MlflowRegistry implements Registry {
  readonly rest: MlflowRest;

  constructor(baseUrl: string) {
    this.rest = new MlflowRest(baseUrl);
  }

  async getVersion(model: string, version: string): Promise<ModelVersion> {
    let mv: MlflowModelVersion;
    try {
      ({ model_version: mv } = await this.rest.call<{ model_version: MlflowModelVersion }>(
        'GET',
        'model-versions/get',
        { name: model, version },
      ));
    } catch (err) {
      if (err instanceof NotFoundError)
        throw new NotFoundError(`MLflow has no version ${version} of model ${model}`);
      throw err;
    }
    return {
      model,
      version,
      inputs: await this.signatureInputs(mv),
      tags: Object.fromEntries((mv.tags ?? []).map((t) => [t.key, t.value])),
    };
  }

  /** The input signature from the version's MLmodel file (served by MLflow's artifact proxy). */
  private async signatureInputs(mv: MlflowModelVersion): Promise<FeatureSpec[]> {
    const source = mv.source ?? '';
    const match = /^models:\/(m-[0-9a-f]+)$/.exec(source);
    const url = match
      ? `${this.rest.baseUrl}/ajax-api/2.0/mlflow/logged-models/${match[1]}/artifacts/files?artifact_file_path=MLmodel`
      : `${this.rest.baseUrl}/get-artifact?path=${encodeURIComponent(`${source.split('/artifacts/')[1] ?? 'model'}/MLmodel`)}&run_uuid=${mv.run_id ?? ''}`;
    const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    if (!response.ok) return [];
    const mlmodel = parse(await response.text()) as MlflowModelFile;
    if (!mlmodel.signature?.inputs) return [];
    const inputs = JSON.parse(mlmodel.signature.inputs) as { name?: string; type: string }[];
    return inputs.filter((i) => i.name).map((i) => ({ name: i.name!, type: i.type }));
  }

  async getAlias(model: string, alias: string): Promise<string | null> {
    try {
      const { model_version } = await this.rest.call<{ model_version: MlflowModelVersion }>(
        'GET',
        'registered-models/alias',
        { name: model, alias },
      );
      return model_version.version;
    } catch (err) {
      if (aliasMissing(err)) return null;
      throw err;
    }
  }

  async setAlias(model: string, alias: string, version: string | null): Promise<void> {
    if (version === null) {
      try {
        await this.rest.call('DELETE', 'registered-models/alias', { name: model, alias });
      } catch (err) {
        if (!aliasMissing(err)) throw err;
      }
      return;
    }
    await this.rest.call('POST', 'registered-models/alias', { name: model, alias, version });
  }

  async setTags(model: string, version: string, tags: Record<string, string>): Promise<void> {
    for (const [key, value] of Object.entries(tags)) {
      await this.rest.call('POST', 'model-versions/set-tag', { name: model, version, key, value });
    }
  }
}
