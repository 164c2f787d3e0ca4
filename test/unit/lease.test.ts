import { ConflictError, InvalidInputError, LeaseEndedError } from '../../src/common/errors';
import {
  acquireLease,
  checkLeaseRequest,
  checkRoute,
  expireLease,
  leaseAfterRestart,
  releaseLease,
  type Lease,
} from '../../src/serving/lease';

const REQ = { holder: 'promotion-fraud/run-1', champion: '1', candidate: '2', ttlMs: 60_000 };
const T0 = 1_700_000_000_000;

function active(): Lease {
  return acquireLease(undefined, REQ, T0);
}

describe('checkLeaseRequest', () => {
  it('accepts a well-formed request', () => {
    expect(checkLeaseRequest({ ...REQ, extra: 1 })).toEqual(REQ);
  });

  it.each([
    [null, 'expected an object'],
    [[], 'expected an object'],
    [{ ...REQ, holder: '' }, 'lease.holder'],
    [{ ...REQ, holder: 'x'.repeat(201) }, 'lease.holder'],
    [{ ...REQ, holder: 'a\nb' }, 'lease.holder'],
    [{ ...REQ, champion: '__proto__' }, 'lease.champion'],
    [{ ...REQ, candidate: '1' }, 'must differ'],
    [{ ...REQ, ttlMs: 1999 }, 'lease.ttlMs'],
    [{ ...REQ, ttlMs: '60000' }, 'lease.ttlMs'],
    [{ ...REQ, ttlMs: 1.5e4 + 0.5 }, 'lease.ttlMs'],
    [{ ...REQ, ttlMs: Infinity }, 'lease.ttlMs'],
    [
      JSON.parse('{"__proto__": {"holder": "x"}, "champion": "1", "candidate": "2", "ttlMs": 5000}'),
      'lease.holder',
    ],
  ])('refuses %j naming the field', (input, message) => {
    expect(() => checkLeaseRequest(input)).toThrow(InvalidInputError);
    expect(() => checkLeaseRequest(input)).toThrow(message);
  });
});

describe('acquireLease', () => {
  it('creates an active lease that expires after its ttl', () => {
    const lease = active();
    expect(lease).toMatchObject({ state: 'active', expiresAtMs: T0 + 60_000, acquiredAtMs: T0 });
  });

  it('renews the same holder', () => {
    const renewed = acquireLease(active(), REQ, T0 + 30_000);
    expect(renewed).toMatchObject({ state: 'active', expiresAtMs: T0 + 90_000, acquiredAtMs: T0 });
  });

  it('refuses another holder while the lease is active, and a renewal that changes the versions', () => {
    expect(() => acquireLease(active(), { ...REQ, holder: 'promotion-fraud/run-2' }, T0)).toThrow(
      ConflictError,
    );
    expect(() => acquireLease(active(), { ...REQ, candidate: '3' }, T0)).toThrow(ConflictError);
  });

  it('never renews an ended lease for its holder, but lets a new holder take over', () => {
    const expired = expireLease(active(), T0 + 60_000);
    expect(() => acquireLease(expired, REQ, T0 + 61_000)).toThrow(LeaseEndedError);
    const next = acquireLease(expired, { ...REQ, holder: 'promotion-fraud/run-2' }, T0 + 61_000);
    expect(next.state).toBe('active');
  });
});

describe('expireLease and leaseAfterRestart', () => {
  it('expires only at or after the expiry time', () => {
    expect(expireLease(active(), T0 + 59_999).state).toBe('active');
    const expired = expireLease(active(), T0 + 60_000);
    expect(expired).toMatchObject({ state: 'expired', endedAtMs: T0 + 60_000 });
    expect(expired.reason).toMatch(/not renewed within 60s/);
  });

  it('gives an active lease a fresh ttl after a restart, and leaves ended ones alone', () => {
    expect(leaseAfterRestart(active(), T0 + 120_000).expiresAtMs).toBe(T0 + 180_000);
    const expired = expireLease(active(), T0 + 60_000);
    expect(leaseAfterRestart(expired, T0 + 120_000)).toBe(expired);
  });
});

describe('releaseLease', () => {
  it("releases the holder's active lease and nothing else", () => {
    expect(releaseLease(active(), REQ.holder, T0 + 1)?.state).toBe('released');
    expect(releaseLease(active(), 'someone-else', T0 + 1)?.state).toBe('active');
    expect(releaseLease(undefined, REQ.holder, T0)).toBeUndefined();
  });
});

describe('checkRoute', () => {
  const split = { weights: { '1': 90, '2': 10 }, shadow: null };
  const mirror = { weights: { '1': 100 }, shadow: { version: '2' } };
  const all = (v: string) => ({ weights: { [v]: 100 }, shadow: null });

  it('lets the holder split between champion and candidate and mirror to the candidate', () => {
    expect(checkRoute(active(), split, REQ.holder, T0)?.state).toBe('active');
    expect(checkRoute(active(), mirror, REQ.holder, T0)?.state).toBe('active');
  });

  it('refuses the holder a version outside the lease', () => {
    expect(() =>
      checkRoute(active(), { weights: { '1': 90, '3': 10 }, shadow: null }, REQ.holder, T0),
    ).toThrow('not 3');
  });

  it('refuses a split or a mirror without the active lease', () => {
    expect(() => checkRoute(undefined, split, undefined, T0)).toThrow(ConflictError);
    expect(() => checkRoute(undefined, mirror, REQ.holder, T0)).toThrow(ConflictError);
    expect(() => checkRoute(active(), split, 'someone-else', T0)).toThrow(ConflictError);
  });

  it('ends the lease when its holder sends all traffic back to the champion, and keeps it on the candidate', () => {
    expect(checkRoute(active(), all('1'), REQ.holder, T0)?.state).toBe('released');
    expect(checkRoute(active(), all('2'), REQ.holder, T0)?.state).toBe('active');
  });

  it('lets its holder take a released lease again, and needs it for a split', () => {
    const released = releaseLease(active(), REQ.holder, T0)!;
    expect(() => checkRoute(released, split, REQ.holder, T0)).toThrow(ConflictError);
    expect(() => checkRoute(released, split, REQ.holder, T0)).not.toThrow(LeaseEndedError);
    expect(acquireLease(released, REQ, T0 + 1).state).toBe('active');
  });

  it('lets anyone send all traffic back to the champion, revoking the lease', () => {
    const revoked = checkRoute(active(), all('1'), undefined, T0);
    expect(revoked?.state).toBe('revoked');
    expect(() => acquireLease(revoked, REQ, T0 + 1)).toThrow(LeaseEndedError);
  });

  it('refuses others any other route while the lease is active', () => {
    expect(() => checkRoute(active(), all('2'), undefined, T0)).toThrow(ConflictError);
  });

  it('never gives traffic back to the candidate under an ended lease', () => {
    const expired = expireLease(active(), T0 + 60_000);
    expect(() => checkRoute(expired, split, REQ.holder, T0 + 61_000)).toThrow(LeaseEndedError);
    expect(() => checkRoute(expired, all('2'), REQ.holder, T0 + 61_000)).toThrow(LeaseEndedError);
    // Its rollback (all traffic to the champion) is fine.
    expect(checkRoute(expired, all('1'), REQ.holder, T0 + 61_000)).toBe(expired);
  });

  it('lets anyone route all traffic to one version when no lease is active', () => {
    expect(checkRoute(undefined, all('2'), undefined, T0)).toBeUndefined();
    const released = releaseLease(active(), REQ.holder, T0)!;
    expect(checkRoute(released, all('2'), REQ.holder, T0)).toBe(released);
  });
});
