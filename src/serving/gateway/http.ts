/**
 * HTTP plumbing of the gateway: every byte a client sends is parsed here, inside error handling,
 * and turned into an HttpError (4xx JSON) when it is not what we expect. Nothing here trusts input:
 * paths are decoded segment by segment, bodies are read against a byte limit, secrets are compared
 * in constant time, names are checked against one safe pattern.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import {
  ConflictError,
  InvalidInputError,
  LeaseEndedError,
  NotFoundError,
  PromoteError,
} from '../../common/errors';

/** An answer other than 2xx that the gateway gives on purpose. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
    readonly code?: string,
  ) {
    super(message);
  }
}

/** The JSON error body of an answer: `{error, code?}`. */
export interface ErrorBody {
  error: string;
  code?: string;
}

/** How an error becomes an answer. Status 500 means a bug in the gateway (logged by the caller). */
export function errorAnswer(err: unknown): {
  status: number;
  body: ErrorBody;
  headers: Record<string, string>;
} {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof HttpError)
    return {
      status: err.status,
      body: err.code ? { error: message, code: err.code } : { error: message },
      headers: { ...err.headers },
    };
  if (err instanceof NotFoundError) return { status: 404, body: { error: message }, headers: {} };
  if (err instanceof InvalidInputError) return { status: 400, body: { error: message }, headers: {} };
  if (err instanceof LeaseEndedError)
    return { status: 409, body: { error: message, code: 'lease_ended' }, headers: {} };
  if (err instanceof ConflictError)
    return { status: 409, body: { error: message, code: 'conflict' }, headers: {} };
  if (err instanceof PromoteError) return { status: 409, body: { error: message }, headers: {} };
  return { status: 500, body: { error: 'internal gateway error' }, headers: {} };
}

/** At most this many characters of client input are quoted back in an error message. */
const QUOTE = 60;
export const quote = (text: string) =>
  JSON.stringify(text.length > QUOTE ? `${text.slice(0, QUOTE)}...` : text);

/** The request target, split and decoded. */
export interface Target {
  /** The raw path, for messages (never decoded). */
  pathname: string;
  /** Decoded, non-empty path segments. */
  segments: string[];
  query: URLSearchParams;
}

const MAX_TARGET = 4096;

/** Parses the request target (origin form only). Bad percent-encodings are a 400, not a crash. */
export function parseTarget(raw: string | undefined): Target {
  if (!raw || raw[0] !== '/') throw new HttpError(400, 'the request target must be a path starting with /');
  if (raw.length > MAX_TARGET)
    throw new HttpError(414, `the request target is over ${MAX_TARGET} characters`);
  const q = raw.indexOf('?');
  const pathname = q < 0 ? raw : raw.slice(0, q);
  const segments = pathname
    .split('/')
    .filter((s) => s !== '')
    .map((segment, i) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        throw new HttpError(400, `path segment ${i + 1} (${quote(segment)}) is not valid percent-encoding`);
      }
    });
  // URLSearchParams never throws: bad escapes become U+FFFD, which no name pattern accepts.
  return { pathname, segments, query: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

/** Reads a request body, refusing (413) as soon as it is known to be over `limit` bytes. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit)
    throw new HttpError(413, `the request body is over ${limit} bytes`, { connection: 'close' });
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      const buffer = chunk as Buffer;
      size += buffer.length;
      if (size > limit)
        throw new HttpError(413, `the request body is over ${limit} bytes`, { connection: 'close' });
      chunks.push(buffer);
    }
  } catch (err) {
    if (err instanceof HttpError) throw err;
    // The client went away mid-body: its problem, not the gateway's (and no error log per attempt).
    throw new HttpError(400, `the request body was cut off (${(err as Error).message})`);
  }
  return Buffer.concat(chunks, size);
}

/** Parses a JSON body; `what` names the endpoint in the error. */
export function parseJson(body: Buffer, what: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, `${what}: the body is not valid JSON`);
  }
}

/** A JSON object body (not an array, not null), or a 400 naming the endpoint. */
export function jsonObject(body: Buffer, what: string): Record<string, unknown> {
  const value = parseJson(body, what);
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new HttpError(400, `${what}: the body must be a JSON object`);
  return value as Record<string, unknown>;
}

/** An own property of a parsed JSON object (never one inherited from Object.prototype). */
export function field(o: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(o, name) ? o[name] : undefined;
}

/** A JSON answer already serialised (off the event loop): sent as is. */
export class RawJson {
  constructor(readonly bytes: Buffer) {}
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const payload =
    body instanceof RawJson ? body.bytes : typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(payload)),
  });
  res.end(payload);
}

export function sendText(res: ServerResponse, status: number, text: string, contentType: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': contentType, 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}

/** 405 naming the methods the endpoint accepts. */
export function methodNotAllowed(method: string | undefined, pathname: string, allowed: string[]): HttpError {
  return new HttpError(
    405,
    `${quote(method ?? '')} is not allowed on ${quote(pathname)} (allowed: ${allowed.join(', ')})`,
    { allow: allowed.join(', ') },
  );
}

/** The bearer token of a request, or null. */
export function bearerToken(req: IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (typeof header !== 'string' || !header.startsWith('Bearer ')) return null;
  return header.slice('Bearer '.length);
}

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/** Compares a presented secret with the expected one in time independent of both (lengths included). */
export function tokenMatches(presented: string | null, expected: string): boolean {
  // Hashing first gives equal-length inputs, so neither the length nor a prefix leaks.
  return timingSafeEqual(digest(presented ?? ''), digest(expected)) && presented !== null;
}

/** Model and version names: the registry's rule (src/client/promotions.ts). */
export const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** A model or version name from a request, or a 400 that says what is wrong with it. */
export function checkName(value: string, what: 'model' | 'version'): string {
  if (!NAME.test(value))
    throw new HttpError(
      400,
      `${what} ${quote(value)} is not a valid name (letters, digits, '.', '_', '-', starting with a letter or digit, at most 100 characters)`,
    );
  return value;
}

/**
 * Answers a request Node's HTTP parser refused (bad request line, header, encoding; slow client),
 * with a JSON 4xx instead of a bare close, then closes the connection. Returns the status sent
 * (null when the client was already gone).
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Socket): number | null {
  // The client hung up (mid-request, or reset): nobody to answer.
  if (err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE' || !socket.writable) {
    socket.destroy();
    return null;
  }
  const status =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 408
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? 431
        : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
          ? 413
          : 400;
  const body = JSON.stringify({ error: `malformed or incomplete HTTP request (${err.code ?? 'unknown'})` });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  return status;
}
