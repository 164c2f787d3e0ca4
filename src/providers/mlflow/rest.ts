/** A small client for MLflow's REST API (2.0 endpoints), with its errors mapped to ours. */
import { NotFoundError, PromoteError } from '../../common/errors';

export class MlflowError extends PromoteError {
  readonly type = 'MlflowError';
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

export class MlflowRest {
  constructor(
    readonly baseUrl: string,
    private readonly timeoutMs = 10_000,
  ) {}

  async call<T>(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    path: string,
    body?: Record<string, unknown>,
  ): Promise<T> {
    let url = `${this.baseUrl.replace(/\/$/, '')}/api/2.0/mlflow/${path}`;
    const init: RequestInit = {
      method,
      signal: AbortSignal.timeout(this.timeoutMs),
      headers: { 'content-type': 'application/json' },
    };
    if (body && method === 'GET') {
      url += `?${new URLSearchParams(Object.entries(body).map(([k, v]): [string, string] => [k, String(v)])).toString()}`;
    } else if (body) {
      init.body = JSON.stringify(body);
    }
    let response: Response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      // Network errors stay plain (retryable by the activity); they are not the caller's fault.
      throw new Error(`MLflow at ${this.baseUrl} is unreachable: ${(err as Error).message}`);
    }
    const text = await response.text();
    const json = (text ? JSON.parse(text) : {}) as T & { error_code?: string; message?: string };
    if (response.ok) return json;
    const message = `MLflow ${method} ${path}: ${json.message ?? response.statusText}`;
    if (json.error_code === 'RESOURCE_DOES_NOT_EXIST' || response.status === 404)
      throw new NotFoundError(message);
    if (response.status >= 500) throw new Error(message);
    throw new MlflowError(message, response.status, json.error_code);
  }
}
