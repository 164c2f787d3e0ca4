/** The gateway's admin API, as the local providers use it. */
import { InvalidInputError, NotFoundError } from '../../common/errors';

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
    const json = (await response.json()) as T & { error?: string };
    if (response.ok) return json;
    const message = `gateway ${method} /admin/${path}: ${json.error ?? response.statusText}`;
    if (response.status === 404) throw new NotFoundError(message);
    if (response.status === 400) throw new InvalidInputError(message);
    throw new Error(message);
  }
}
