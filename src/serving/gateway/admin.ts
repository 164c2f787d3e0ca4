/**
 * The admin API (bearer admin token): routes, leases, model servers, faults, policies, state, and
 * the read endpoints the providers measure with. Every name in a path is checked, every body is a
 * bounded JSON object read through own properties only.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidInputError, NotFoundError } from '../../common/errors';
import type { Logger } from '../../common/logger';
import {
  HttpError,
  RawJson,
  bearerToken,
  checkName,
  field,
  jsonObject,
  methodNotAllowed,
  quote,
  readBody,
  sendJson,
  tokenMatches,
} from './http';
import type { Leases } from './leases';
import {
  MAX_READ_ROWS,
  MAX_SLICE_VALUES,
  PredictionLogUnavailable,
  measureCounts,
  type PredictionLog,
  type SliceFilter,
} from './prediction-log';
import { REQUEST_KEY } from '../../plan/schema';
import { checkWeights } from './routing';
import { DEFAULT_STICKY_KEY, MAX_SLICE_KEYS, type GatewayRoute, type StateStore } from './state';
import { MAX_SLICE_VALUE } from './traffic-input';
import type { Upstream } from './upstream';

/** Admin bodies are small documents. */
const MAX_ADMIN_BODY = 64 * 1024;
const MAX_HOLDER = 200;

export interface AdminDeps {
  token: string;
  store: StateStore;
  leases: Leases;
  log: PredictionLog;
  upstream: Upstream;
  logger: Logger;
}

/** One endpoint: the methods it takes and the number of names after the resource. */
const ENDPOINTS: Record<string, { methods: string[]; names: number[] }> = {
  state: { methods: ['GET'], names: [0] },
  measure: { methods: ['GET'], names: [2] },
  labelled: { methods: ['GET'], names: [2] },
  slices: { methods: ['GET'], names: [1] },
  pairs: { methods: ['GET'], names: [1] },
  features: { methods: ['GET'], names: [1] },
  routes: { methods: ['GET', 'PUT'], names: [1] },
  leases: { methods: ['GET', 'PUT', 'DELETE'], names: [1] },
  backends: { methods: ['PUT', 'DELETE'], names: [2] },
  faults: { methods: ['PUT', 'DELETE'], names: [2] },
  policies: { methods: ['PUT', 'DELETE'], names: [2] },
};

/** An admin request as data: what `respond` needs, whichever process received it. */
export interface AdminCall {
  method: string;
  /** The bearer token presented, if any. */
  token: string | null;
  segments: string[];
  pathname: string;
  /** The query string (without '?'). */
  query: string;
  /** The body of a PUT (at most 64 KiB), as text. */
  body: string | null;
}

const unauthorized = () =>
  new HttpError(401, 'admin API: missing or wrong bearer token', { 'www-authenticate': 'Bearer' });

function endpointOf(
  segments: string[],
  pathname: string,
  method: string,
): { resource: string; names: string[] } {
  const [resource = '', ...names] = segments;
  const endpoint = Object.hasOwn(ENDPOINTS, resource) ? ENDPOINTS[resource] : undefined;
  if (!endpoint || !endpoint.names.includes(names.length))
    throw new HttpError(404, `admin API: no such endpoint ${quote(pathname)}`);
  if (!endpoint.methods.includes(method)) throw methodNotAllowed(method, pathname, endpoint.methods);
  return { resource, names };
}

/**
 * Reads an admin request off the wire: the token is checked and the endpoint and method known
 * before any body is read, and a body is read only for PUT, bounded.
 */
export async function readAdminCall(
  req: IncomingMessage,
  token: string,
  segments: string[],
  pathname: string,
  query: URLSearchParams,
): Promise<AdminCall> {
  const presented = bearerToken(req);
  if (!tokenMatches(presented, token)) throw unauthorized();
  const method = req.method ?? '';
  endpointOf(segments, pathname, method);
  const body = method === 'PUT' ? (await readBody(req, MAX_ADMIN_BODY)).toString('utf8') : null;
  return { method, token: presented, segments, pathname, query: query.toString(), body };
}

export class AdminApi {
  constructor(private readonly d: AdminDeps) {}

  /** Handles `/admin/<segments>` over HTTP. */
  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    segments: string[],
    pathname: string,
    query: URLSearchParams,
  ): Promise<void> {
    const call = await readAdminCall(req, this.d.token, segments, pathname, query);
    sendJson(res, 200, await this.respond(call));
  }

  /**
   * Answers an admin call (from this process's HTTP server, or forwarded by a worker process).
   * Throws HttpError and the domain errors, which `errorAnswer` turns into answers.
   */
  async respond(call: AdminCall): Promise<unknown> {
    if (!tokenMatches(call.token, this.d.token)) throw unauthorized();
    const { resource, names } = endpointOf(call.segments, call.pathname, call.method);
    const model = names[0] === undefined ? '' : checkName(names[0], 'model');
    const version = names[1] === undefined ? '' : checkName(names[1], 'version');
    const body =
      call.method === 'PUT' ? jsonObject(Buffer.from(call.body ?? '', 'utf8'), `admin ${resource}`) : {};
    return this.answer(resource, call.method, model, version, body, new URLSearchParams(call.query));
  }

  private async answer(
    resource: string,
    method: string,
    model: string,
    version: string,
    body: Record<string, unknown>,
    query: URLSearchParams,
  ): Promise<unknown> {
    const { store, leases } = this.d;
    switch (resource) {
      case 'state':
        return store.toJSON();
      case 'measure':
      case 'pairs':
      case 'labelled':
      case 'slices':
        return this.read(resource, model, version, query);
      case 'features':
        return [...(store.get(model)?.features ?? [])].map(([name, type]) => ({ name, type }));
      case 'routes':
        if (method === 'PUT') return this.setRoute(model, body);
        return store.get(model)?.route ?? notFound(`unknown model ${model}: no route`);
      case 'leases':
        if (method === 'PUT') return leases.acquire(model, body);
        if (method === 'GET') return leases.get(model) ?? notFound(`${model} has no traffic lease`);
        return leases.release(model, holderParam(query)) ?? notFound(`${model} has no traffic lease`);
      default:
        return this.setVersionState(resource, method, model, version, body);
    }
  }

  /** backends, faults and policies of one version. */
  private setVersionState(
    resource: string,
    method: string,
    model: string,
    version: string,
    body: Record<string, unknown>,
  ): unknown {
    const { store } = this.d;
    const m = method === 'PUT' ? store.ensure(model) : store.get(model);
    if (!m) throw new NotFoundError(`unknown model ${model}`);
    if (resource === 'backends') {
      if (method === 'PUT') m.backends.set(version, checkUrl(field(body, 'url')));
      else {
        const route = m.route;
        if (route && ((route.weights[version] ?? 0) > 0 || route.shadow?.version === version))
          throw new HttpError(
            409,
            `${model}/${version} still receives traffic; route it away first`,
            {},
            'conflict',
          );
        m.backends.delete(version);
      }
    } else if (resource === 'faults') {
      if (method === 'PUT') {
        const latencyMs = Number(field(body, 'latencyMs') ?? 0);
        const errorRate = Number(field(body, 'errorRate') ?? 0);
        if (!(latencyMs >= 0 && latencyMs <= 60_000))
          throw new InvalidInputError('faults: latencyMs must be 0..60000');
        if (!(errorRate >= 0 && errorRate <= 1))
          throw new InvalidInputError('faults: errorRate must be 0..1');
        m.faults.set(version, { latencyMs, errorRate });
      } else m.faults.delete(version);
    } else if (method === 'PUT') {
      const review = field(body, 'review');
      const block = field(body, 'block');
      if (
        typeof review !== 'number' ||
        typeof block !== 'number' ||
        !(review >= 0 && review < block && block <= 1)
      )
        throw new InvalidInputError('policies: need numbers 0 <= review < block <= 1');
      m.policies.set(version, { review, block });
    } else m.policies.delete(version);
    store.save();
    return store.toJSON();
  }

  /** Windows of the prediction log, aggregated or limited by the database. */
  private async read(resource: string, model: string, version: string, q: URLSearchParams): Promise<unknown> {
    const fromMs = epochParam(q, 'from', 0);
    const toMs = epochParam(q, 'to', Date.now());
    const limit = limitParam(q);
    const { log } = this.d;
    try {
      if (resource === 'slices') {
        const key = requestKeyParam(q.get('key'), 'key');
        const top = limit === undefined ? 10 : Math.min(limit, MAX_SLICE_VALUES);
        return await log.sliceValues(model, key, fromMs, toMs, top);
      }
      const slice = sliceParam(q);
      if (resource === 'pairs') {
        const champion = checkName(q.get('champion') ?? '', 'version');
        const candidate = checkName(q.get('candidate') ?? '', 'version');
        return new RawJson(await log.pairsJson(model, champion, candidate, fromMs, toMs, limit));
      }
      if (resource === 'labelled')
        return new RawJson(await log.labelledJson(model, version, fromMs, toMs, limit, slice));
      const metric = q.get('metric') ?? 'error_rate';
      if (metric.length > 100) throw new InvalidInputError('metric: at most 100 characters');
      return measureCounts(
        await log.counts(model, version, fromMs, toMs, 'primary', slice),
        metric,
        version,
        fromMs,
        toMs,
      );
    } catch (err) {
      if (err instanceof PredictionLogUnavailable) throw new HttpError(503, err.message);
      throw err;
    }
  }

  /**
   * Validates and applies a route. The lease rules decide first; every version with traffic (and
   * the shadow) must have a model server that answers /ping; the lease is checked again after
   * those calls, since it may have expired meanwhile.
   */
  private async setRoute(model: string, input: Record<string, unknown>): Promise<GatewayRoute> {
    const { store, leases, upstream, logger } = this.d;
    const weights = checkWeights(model, field(input, 'weights') ?? {});
    const shadow = readShadow(field(input, 'shadow'));
    const stickyIn = field(input, 'stickyKey');
    const stickyKey = stickyIn ?? store.get(model)?.route?.stickyKey ?? DEFAULT_STICKY_KEY;
    if (typeof stickyKey !== 'string' || !REQUEST_KEY.test(stickyKey))
      throw new InvalidInputError('stickyKey must be header:<name> or field:<name> (letters, digits, . _ -)');
    const sliceKeys = readSliceKeys(field(input, 'sliceKeys')) ?? store.get(model)?.route?.sliceKeys ?? [];
    const claimIn = field(input, 'lease');
    if (claimIn !== undefined && (typeof claimIn !== 'string' || claimIn.length > MAX_HOLDER))
      throw new InvalidInputError(
        `lease: expected the holder's id (a string of at most ${MAX_HOLDER} characters)`,
      );
    const claim = claimIn;
    const shape = { weights, shadow };
    leases.check(model, shape, claim);
    for (const v of [...Object.keys(weights), ...(shadow ? [shadow.version] : [])]) {
      const backend = store.get(model)?.backends.get(v);
      if (!backend) throw new NotFoundError(`unknown version ${model}/${v}: no model server registered`);
      if (!(await upstream.ping(backend, 2000)))
        throw new HttpError(503, `${model}/${v} has no healthy model server at ${backend}`);
    }
    const lease = leases.check(model, shape, claim);
    const m = store.ensure(model);
    const route: GatewayRoute = { weights, shadow, stickyKey, sliceKeys };
    m.route = route;
    m.lease = lease ?? null;
    store.save();
    logger.info({ model, weights, shadow, lease: claim ?? null }, 'route set');
    return route;
  }
}

function notFound(message: string): never {
  throw new NotFoundError(message);
}

function readShadow(input: unknown): GatewayRoute['shadow'] {
  if (input === null || input === undefined) return null;
  if (typeof input !== 'object' || Array.isArray(input))
    throw new InvalidInputError('shadow must be null or {version, sampleRate}');
  const o = input as Record<string, unknown>;
  const version = field(o, 'version');
  const rate = Number(field(o, 'sampleRate') ?? 1);
  if (typeof version !== 'string') throw new InvalidInputError('shadow.version must be a version');
  checkName(version, 'version');
  if (!(rate > 0 && rate <= 1)) throw new InvalidInputError('shadow.sampleRate must be in (0, 1]');
  return { version, sampleRate: rate };
}

/** A route's sliceKeys: absent keeps the current ones; otherwise distinct request keys, at most MAX_SLICE_KEYS. */
function readSliceKeys(input: unknown): string[] | undefined {
  if (input === undefined) return undefined;
  if (!Array.isArray(input) || input.length > MAX_SLICE_KEYS)
    throw new InvalidInputError(`sliceKeys must be a list of at most ${MAX_SLICE_KEYS} keys`);
  const keys = input.map((k, i) => requestKeyParam(k, `sliceKeys[${i}]`));
  if (new Set(keys).size !== keys.length) throw new InvalidInputError('sliceKeys: a key is listed twice');
  return keys;
}

function requestKeyParam(input: unknown, what: string): string {
  if (typeof input !== 'string' || !REQUEST_KEY.test(input))
    throw new InvalidInputError(
      `${what} must be header:<name> or field:<name> (letters, digits, . _ -; at most 100)`,
    );
  return input;
}

/** `?slice=<key>&value=<value>`: the requests of one slice (both or neither). */
function sliceParam(q: URLSearchParams): SliceFilter | undefined {
  const key = q.get('slice');
  const value = q.get('value');
  if (key === null && value === null) return undefined;
  if (key === null || value === null) throw new InvalidInputError('slice and value go together');
  if (value === '' || value.length > MAX_SLICE_VALUE)
    throw new InvalidInputError(`value: 1..${MAX_SLICE_VALUE} characters`);
  return { key: requestKeyParam(key, 'slice'), value };
}

function checkUrl(input: unknown): string {
  if (typeof input !== 'string' || input.length > 2048 || !/^https?:\/\//.test(input))
    throw new InvalidInputError('backends: url must be an http(s) URL');
  try {
    new URL(input);
  } catch {
    throw new InvalidInputError(`backends: url ${quote(input)} is not a URL`);
  }
  return input.replace(/\/$/, '');
}

function epochParam(q: URLSearchParams, name: string, fallback: number): number {
  const raw = q.get(name);
  const value = raw === null ? fallback : Number(raw);
  if (!Number.isSafeInteger(Math.trunc(value)) || raw === '')
    throw new InvalidInputError('from and to must be epoch milliseconds');
  return value;
}

function limitParam(q: URLSearchParams): number | undefined {
  const raw = q.get('limit');
  if (raw === null) return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > MAX_READ_ROWS)
    throw new InvalidInputError(`limit must be a whole number 1..${MAX_READ_ROWS}`);
  return value;
}

function holderParam(q: URLSearchParams): string {
  const holder = q.get('holder');
  if (!holder || holder.length > MAX_HOLDER)
    throw new InvalidInputError(
      `leases: DELETE needs ?holder=<the holder's id> (at most ${MAX_HOLDER} characters)`,
    );
  return holder;
}
