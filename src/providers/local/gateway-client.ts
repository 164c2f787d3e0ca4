/** The gateway's admin API, as the local providers use it. */
import { ConflictError, InvalidInputError, LeaseEndedError, NotFoundError } from '../../common/errors';

export class GatewayClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async admin<T>(method: 'GET' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const call = () =>
      fetch(`${this.baseUrl}/admin/${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
    let response: Response;
    try {
      response = await call();
    } catch {
      // A pooled connection to a gateway that restarted fails once; every admin call is idempotent.
      await new Promise((r) => setTimeout(r, 200));
      try {
        response = await call();
      } catch (err) {
        throw new Error(`the gateway at ${this.baseUrl} is unreachable: ${(err as Error).message}`);
      }
    }
    const text = await response.text();
    let json: (T & { error?: string; code?: string }) | undefined;
    try {
      json = JSON.parse(text) as T & { error?: string; code?: string };
    } catch {
      json = undefined;
    }
    if (response.ok && json !== undefined) return json;
    const message = `gateway ${method} /admin/${path}: ${json?.error ?? `HTTP ${response.status} ${text.slice(0, 200)}`}`;
    if (response.status === 404) throw new NotFoundError(message);
    if (response.status === 400) throw new InvalidInputError(message);
    if (response.status === 409 && json?.code === 'lease_ended')
      throw new LeaseEndedError(json.error ?? message);
    if (response.status === 409) throw new ConflictError(message);
    // 401/403 (wrong token) and 5xx stay plain errors: retrying may help, and the caller says where.
    throw new Error(message);
  }
}
