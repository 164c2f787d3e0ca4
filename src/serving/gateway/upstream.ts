/**
 * Calls to model servers over a keep-alive connection pool of their own, with a deadline and a
 * bound on the answer's size. Never throws: a server that fails, is slow or answers too much
 * becomes a 5xx answer about that server.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

export interface UpstreamAnswer {
  status: number;
  body: string;
}

export interface UpstreamOptions {
  /** Deadline of one call, ms. */
  timeoutMs: number;
  /** Connections per model server at most. */
  maxSockets: number;
  /** Largest answer accepted, bytes. Default 8 MiB. */
  maxAnswerBytes?: number;
}

const failure = (status: number, error: string): UpstreamAnswer => ({
  status,
  body: JSON.stringify({ error }),
});

/**
 * The first prediction of a 2xx answer, when it is a number. Called after the answer has been sent
 * to the client: parsing it is not on the response's path.
 */
export function firstScore(answer: UpstreamAnswer): number | null {
  if (answer.status < 200 || answer.status >= 300) return null;
  const text = answer.body;
  try {
    const parsed = JSON.parse(text) as unknown;
    const predictions =
      parsed && typeof parsed === 'object' && Object.hasOwn(parsed, 'predictions')
        ? (parsed as { predictions: unknown }).predictions
        : undefined;
    const first: unknown = Array.isArray(predictions) ? predictions[0] : undefined;
    return typeof first === 'number' && Number.isFinite(first) ? first : null;
  } catch {
    return null;
  }
}

export class Upstream {
  private readonly http: HttpAgent;
  private readonly https: HttpsAgent;

  constructor(private readonly opts: UpstreamOptions) {
    const pool = { keepAlive: true, maxSockets: opts.maxSockets, maxFreeSockets: opts.maxSockets };
    this.http = new HttpAgent(pool);
    this.https = new HttpsAgent(pool);
  }

  /** POSTs a scoring request to `<base>/invocations`; `what` names the server in errors. */
  invoke(base: string, body: Buffer, what: string): Promise<UpstreamAnswer> {
    const limit = this.opts.maxAnswerBytes ?? 8 << 20;
    return new Promise<UpstreamAnswer>((resolve) => {
      let settled = false;
      const done = (answer: UpstreamAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(answer);
      };
      const onAnswer = (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > limit) {
            req.destroy();
            done(failure(502, `${what} answered more than ${limit} bytes`));
          } else chunks.push(chunk);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 502;
          done({ status, body: text });
        });
        res.on('error', (err) => done(failure(502, `${what} did not answer: ${err.message}`)));
      };
      let req: ReturnType<typeof httpRequest>;
      try {
        const url = new URL(`${base}/invocations`);
        const https = url.protocol === 'https:';
        req = (https ? httpsRequest : httpRequest)(
          url,
          {
            method: 'POST',
            agent: https ? this.https : this.http,
            headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
          },
          onAnswer,
        );
      } catch (err) {
        return done(failure(502, `${what}: ${(err as Error).message}`));
      }
      const timer = setTimeout(() => {
        req.destroy();
        done(failure(504, `${what} did not answer within ${this.opts.timeoutMs}ms`));
      }, this.opts.timeoutMs);
      req.on('error', (err) => done(failure(502, `${what} did not answer: ${err.message}`)));
      req.end(body);
    });
  }

  /** True if `<base>/ping` answers 2xx within `timeoutMs`. */
  async ping(base: string, timeoutMs: number): Promise<boolean> {
    try {
      const r = await fetch(`${base}/ping`, { signal: AbortSignal.timeout(timeoutMs) });
      await r.arrayBuffer();
      return r.ok;
    } catch {
      return false;
    }
  }

  destroy(): void {
    this.http.destroy();
    this.https.destroy();
  }
}
