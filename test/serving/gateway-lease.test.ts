/**
 * The traffic lease at the gateway (docs/fail-safe.md): a split needs the lease, a lease that is not
 * renewed sends all traffic back to the champion by itself, its holder never gets the candidate
 * back, and lease state survives a restart with a fresh time to live.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { ConflictError, LeaseEndedError } from '../../src/common/errors';
import { GatewayClient } from '../../src/providers/local/gateway-client';
import type { Lease } from '../../src/serving/lease';
import {
  doc,
  ADMIN_TOKEN,
  MODEL,
  leaseFor,
  startGateway,
  upstream,
  type TestGateway,
  type Upstream,
} from '../helpers/gateway';

const TTL = 2000;
let v1: Upstream;
let v2: Upstream;
let g: TestGateway;
let logLines: Record<string, unknown>[];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const json = async (r: Response | Promise<Response>) => {
  const response = await r;
  return [response.status, await response.json()] as [number, Record<string, unknown>];
};
const metric = async (name: string) =>
  new RegExp(`^${name} (\\d+)$`, 'm').exec(await (await fetch(`${g.url}/metrics`)).text())?.[1];

async function until(check: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms}ms`);
    await sleep(50);
  }
}

const onCandidate = async (n = 40) => {
  let count = 0;
  for (let i = 0; i < n; i++) if ((await g.invoke(`entity-${i}`)).version === 'v2') count++;
  return count;
};

beforeEach(async () => {
  v1 = await upstream(0.2);
  v2 = await upstream(0.9);
  logLines = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
        logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  g = await startGateway({ leaseCheckEveryMs: 100, logger: pino({ level: 'info' }, sink) });
  await g.admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
  await g.admin('PUT', `backends/${MODEL}/v2`, { url: v2.url });
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } });
});

afterEach(async () => {
  await g.close();
  v1.close();
  v2.close();
});

test('a split or a mirror needs an active lease naming its holder', async () => {
  const [status, body] = await json(g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 90, v2: 10 } }));
  expect([status, body.code]).toEqual([409, 'conflict']);
  expect(body.error).toMatch(/needs an active lease: PUT \/admin\/leases\/<model> first/);
  const mirror = await json(
    g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 }, shadow: { version: 'v2' } }),
  );
  expect(mirror[0]).toBe(409);
  const [acquired, lease] = await json(g.admin('PUT', `leases/${MODEL}`, leaseFor('p/1', TTL)));
  expect([acquired, lease]).toEqual([
    200,
    expect.objectContaining({ holder: 'p/1', champion: 'v1', candidate: 'v2', state: 'active', ttlMs: TTL }),
  ]);
  expect(await json(g.admin('GET', `leases/${MODEL}`))).toEqual([200, lease]);
  expect((await doc(g.admin('GET', 'state'))).leases[MODEL]).toEqual(lease);
  // Only the holder, and only with the lease's versions.
  expect(
    (await json(g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 90, v2: 10 }, lease: 'p/9' })))[1],
  ).toMatchObject({
    code: 'conflict',
  });
  await g.admin('PUT', `backends/${MODEL}/v3`, { url: v2.url });
  const stranger = await json(
    g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 90, v3: 10 }, lease: 'p/1' }),
  );
  expect(stranger).toEqual([
    409,
    { error: 'the lease of p/1 covers versions v1 and v2, not v3', code: 'conflict' },
  ]);
  expect(
    (await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 90, v2: 10 }, lease: 'p/1' })).status,
  ).toBe(200);
});

test('an expired lease sends all traffic back to the champion, counts, logs, and is recorded with its reason', async () => {
  await g.admin('PUT', `leases/${MODEL}`, leaseFor('p/1', TTL));
  await g.admin('PUT', `routes/${MODEL}`, {
    weights: { v1: 50, v2: 50 },
    shadow: { version: 'v2' },
    lease: 'p/1',
  });
  expect(await onCandidate()).toBeGreaterThan(5);
  await until(async () => (await doc(g.admin('GET', `leases/${MODEL}`))).state === 'expired', 5000);
  expect(await (await g.admin('GET', `routes/${MODEL}`)).json()).toEqual({
    weights: { v1: 100 },
    shadow: null,
    stickyKey: 'header:x-entity-id',
    sliceKeys: [],
  });
  expect(await onCandidate()).toBe(0);
  const state = await doc(g.admin('GET', 'state'));
  expect(state.leases[MODEL]).toMatchObject({
    state: 'expired',
    reason: expect.stringMatching(/^not renewed within 2s/),
  });
  expect(await metric('promote_gateway_lease_expired_total\\{model="fraud"\\}')).toBe('1');
  expect(logLines).toContainEqual(
    expect.objectContaining({
      level: 40,
      model: MODEL,
      holder: 'p/1',
      champion: 'v1',
      reason: expect.stringMatching(/^not renewed within/),
      msg: 'traffic lease expired: all traffic sent back to the champion',
    }),
  );
});

test('the old holder can never route to the candidate again; another holder can take the lease', async () => {
  const client = new GatewayClient(g.url, ADMIN_TOKEN);
  await g.admin('PUT', `leases/${MODEL}`, leaseFor('p/1', TTL));
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 80, v2: 20 }, lease: 'p/1' });
  await until(async () => (await doc(g.admin('GET', `leases/${MODEL}`))).state === 'expired', 5000);
  const renew = await json(g.admin('PUT', `leases/${MODEL}`, leaseFor('p/1', TTL)));
  expect([renew[0], renew[1].code]).toEqual([409, 'lease_ended']);
  expect(renew[1].error).toMatch(
    /^the lease of p\/1 expired at .* \(not renewed within 2s .*\); traffic went back to v1$/,
  );
  await expect(client.admin('PUT', `leases/${MODEL}`, leaseFor('p/1', TTL))).rejects.toBeInstanceOf(
    LeaseEndedError,
  );
  for (const weights of [{ v1: 50, v2: 50 }, { v2: 100 }]) {
    const [status, body] = await json(g.admin('PUT', `routes/${MODEL}`, { weights, lease: 'p/1' }));
    expect([status, body.code]).toEqual([409, 'lease_ended']);
  }
  expect(await onCandidate()).toBe(0);
  // A new promotion takes the lease and splits again.
  expect((await json(g.admin('PUT', `leases/${MODEL}`, leaseFor('p/2', 60_000))))[1]).toMatchObject({
    state: 'active',
  });
  expect(
    (await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 50, v2: 50 }, lease: 'p/2' })).status,
  ).toBe(200);
  await expect(client.admin('PUT', `leases/${MODEL}`, leaseFor('p/3', TTL))).rejects.toBeInstanceOf(
    ConflictError,
  );
  expect(await onCandidate()).toBeGreaterThan(5);
});

test('renewals keep the lease; an operator sending all traffic to the champion revokes it; the holder releases', async () => {
  await g.admin('PUT', `leases/${MODEL}`, leaseFor('p/1', TTL));
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 50, v2: 50 }, lease: 'p/1' });
  for (let i = 0; i < 6; i++) {
    await sleep(500);
    expect((await g.admin('PUT', `leases/${MODEL}`, leaseFor('p/1', TTL))).status).toBe(200);
  }
  expect((await doc(g.admin('GET', `leases/${MODEL}`))).state).toBe('active');
  expect(await onCandidate()).toBeGreaterThan(5);
  // Someone else can only send everything back to the champion, which revokes the lease.
  expect((await json(g.admin('PUT', `routes/${MODEL}`, { weights: { v2: 100 } })))[1]).toMatchObject({
    code: 'conflict',
  });
  expect((await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } })).status).toBe(200);
  expect(await (await g.admin('GET', `leases/${MODEL}`)).json()).toMatchObject({ state: 'revoked' });
  expect((await json(g.admin('PUT', `leases/${MODEL}`, leaseFor('p/1', TTL))))[1]).toMatchObject({
    code: 'lease_ended',
  });
  // Release by another holder: p/2 acquires, then releases (idempotent).
  await g.admin('PUT', `leases/${MODEL}`, leaseFor('p/2', TTL));
  const released = await json(g.admin('DELETE', `leases/${MODEL}?holder=p%2F2`));
  expect(released).toEqual([
    200,
    expect.objectContaining({ state: 'released', reason: 'released by its holder' }),
  ]);
  expect((await json(g.admin('DELETE', `leases/${MODEL}?holder=p%2F2`)))[1]).toMatchObject({
    state: 'released',
  });
  expect(await json(g.admin('DELETE', `leases/${MODEL}`))).toEqual([
    400,
    { error: "leases: DELETE needs ?holder=<the holder's id> (at most 200 characters)" },
  ]);
  expect((await g.admin('GET', `leases/other-model`)).status).toBe(404);
  const bad = await json(g.admin('PUT', `leases/${MODEL}`, { ...leaseFor('p/4'), ttlMs: 5 }));
  expect(bad).toEqual([400, { error: 'lease.ttlMs: expected whole milliseconds 2000..604800000' }]);
});

test('lease and route survive a restart, with a fresh time to live from the restart', async () => {
  await g.admin('PUT', `leases/${MODEL}`, leaseFor('p/1', TTL));
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 50, v2: 50 }, lease: 'p/1' });
  await g.gateway.close();
  await sleep(TTL + 500); // down for longer than the lease's time to live
  const restartedAt = Date.now();
  await g.restart({ leaseCheckEveryMs: 100 });
  const lease = (await doc(g.admin('GET', `leases/${MODEL}`))) as unknown as Lease;
  expect(lease).toMatchObject({ state: 'active', holder: 'p/1' });
  expect(lease.expiresAtMs).toBeGreaterThanOrEqual(restartedAt + TTL);
  expect(await onCandidate()).toBeGreaterThan(5);
  // Renewable after the restart...
  expect((await g.admin('PUT', `leases/${MODEL}`, leaseFor('p/1', TTL))).status).toBe(200);
  // ...and, left alone, it expires and the champion gets everything.
  await until(async () => (await doc(g.admin('GET', `leases/${MODEL}`))).state === 'expired', 5000);
  expect(await onCandidate()).toBe(0);
  await g.restart();
  expect(await (await g.admin('GET', `leases/${MODEL}`)).json()).toMatchObject({ state: 'expired' });
  expect(await (await g.admin('GET', `routes/${MODEL}`)).json()).toMatchObject({ weights: { v1: 100 } });
});
