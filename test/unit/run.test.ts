/** PromotionRun: the message rules (votes, abort, pause, resume), bookkeeping and phase. */
import type { Assessment, Verdict } from '../../src/analysis/types';
import { hashPlan } from '../../src/plan/load';
import { parsePlan } from '../../src/plan/validate';
import { DECISION_CAPS, initialState, MAX_REFUSALS, PromotionRun } from '../../src/workflows/run';

// ---- builders ----

const T0 = Date.UTC(2025, 0, 15, 12, 0, 0);
const HOUR = 3_600_000;

/** Three steps; step 2 (index 1) needs 2 of alice, bob, carol. */
const plan = parsePlan({
  canary: {
    steps: [
      { traffic: 10 },
      { traffic: 50, approval: { approvers: ['alice', 'bob', 'carol'], required: 2 } },
      { traffic: 100 },
    ],
  },
});

function newRun(startedBy = 'dave'): PromotionRun {
  return new PromotionRun(
    initialState(
      { model: 'fraud', candidate: 'v2', plan, planHash: hashPlan(plan), startedBy },
      'promo-1',
      T0,
    ),
  );
}

/** A run waiting for the approval of step 2. */
function awaitingApproval(startedBy = 'dave'): PromotionRun {
  const run = newRun(startedBy);
  run.s.stage = 'canary';
  run.s.stepIndex = 1;
  run.openApproval(1, plan.canary.steps[1]!.approval!, 4 * HOUR, T0);
  return run;
}

const check = (subject: string, verdict: Verdict): Assessment => ({
  subject,
  verdict,
  evidence: `${subject} is ${verdict}`,
});
const last = (run: PromotionRun) => run.s.decisions[run.s.decisions.length - 1]!;

// ---- initial state ----

test('initialState starts in staging with nothing done', () => {
  const run = newRun();
  expect(run.s).toMatchObject({
    id: 'promo-1',
    model: 'fraud',
    candidate: 'v2',
    startedBy: 'dave',
    startedAt: '2025-01-15T12:00:00.000Z',
    stage: 'staging',
    stepIndex: -1,
    trafficPercent: 0,
    pendingApproval: null,
    stop: null,
    outcome: null,
    decisions: [],
    decisionsDropped: 0,
  });
  expect(run.phase).toBe('staging');
  expect(run.status().step).toEqual({ index: -1, total: 3, traffic: null });
});

// ---- refusals ----

type Case = [string, (run: PromotionRun) => ReturnType<PromotionRun['vote']>, string, string];

const refusals: Case[] = [
  [
    'approver not allowed',
    (r) => r.vote('approve', { by: 'mallory' }, T0),
    'mallory is not an approver of step 2 (allowed: alice, bob, carol)',
    'mallory',
  ],
  [
    'reject by someone not allowed',
    (r) => r.vote('reject', { by: 'mallory', reason: 'no' }, T0),
    'mallory is not an approver of step 2 (allowed: alice, bob, carol)',
    'mallory',
  ],
  [
    'self-approval by an allowed approver',
    (r) => {
      r.s.startedBy = 'alice';
      return r.vote('approve', { by: 'alice' }, T0);
    },
    'alice started this promotion and cannot approve it (no self-approval)',
    'alice',
  ],
  [
    'double vote',
    (r) => {
      r.vote('approve', { by: 'alice' }, T0);
      return r.vote('approve', { by: 'alice' }, T0);
    },
    'alice has already approved step 2',
    'alice',
  ],
  [
    'no pending approval',
    (r) => {
      r.s.pendingApproval = null;
      return r.vote('approve', { by: 'alice' }, T0);
    },
    'no approval is pending',
    'alice',
  ],
  ['reject without a reason', (r) => r.vote('reject', { by: 'bob' }, T0), 'reason is required', 'bob'],
  [
    'reject with a blank reason',
    (r) => r.vote('reject', { by: 'bob', reason: '   ' }, T0),
    'reason is required',
    'bob',
  ],
  [
    'approve without by',
    (r) => r.vote('approve', { comment: 'lgtm' }, T0),
    'by is required: the name of the user sending it',
    '(invalid sender)',
  ],
  [
    'approve with a non-string by',
    (r) => r.vote('approve', { by: 42 }, T0),
    'by must be a string: the name of the user sending it',
    '(invalid sender)',
  ],
  [
    'approve with no payload',
    (r) => r.vote('approve', undefined, T0),
    'by is required: the name of the user sending it',
    '(invalid sender)',
  ],
  [
    'vote after a stop',
    (r) => {
      r.abort({ by: 'carol', reason: 'bad' }, T0);
      return r.vote('approve', { by: 'alice' }, T0);
    },
    'the promotion is no longer running',
    'alice',
  ],
  [
    'abort twice',
    (r) => {
      r.abort({ by: 'alice', reason: 'drift' }, T0);
      return r.abort({ by: 'bob', reason: 'drift too' }, T0);
    },
    'the promotion is already stopping (aborted)',
    'bob',
  ],
  [
    'abort after completed',
    (r) => {
      r.s.outcome = 'succeeded';
      return r.abort({ by: 'alice', reason: 'late' }, T0);
    },
    'the promotion has already completed',
    'alice',
  ],
  ['abort without a reason', (r) => r.abort({ by: 'alice' }, T0), 'reason is required', 'alice'],
  [
    'abort without by',
    (r) => r.abort({ reason: 'x' }, T0),
    'by is required: the name of the user sending it',
    '(invalid sender)',
  ],
  [
    'pause twice',
    (r) => {
      r.pause({ by: 'alice', reason: 'investigating' }, T0);
      return r.pause({ by: 'bob' }, T0);
    },
    'already paused by alice',
    'bob',
  ],
  [
    'pause while stopping',
    (r) => {
      r.abort({ by: 'alice', reason: 'drift' }, T0);
      return r.pause({ by: 'bob' }, T0);
    },
    'the promotion is no longer running',
    'bob',
  ],
  [
    'pause without by',
    (r) => r.pause({ reason: 'x' }, T0),
    'by is required: the name of the user sending it',
    '(invalid sender)',
  ],
  ['resume when not paused', (r) => r.resume({ by: 'alice' }, T0), 'the promotion is not paused', 'alice'],
  [
    'resume without by',
    (r) => r.resume({}, T0),
    'by is required: the name of the user sending it',
    '(invalid sender)',
  ],
];

test.each(refusals)('refused: %s', (_name, act, message, by) => {
  const run = awaitingApproval();
  const result = act(run);
  expect(result).toEqual({ accepted: false, message });
  const refusal = run.s.refusals.find((r) => r.why === message)!;
  expect(refusal).toMatchObject({ who: by, why: message, count: 1 });
  expect(['approve', 'reject', 'abort', 'pause', 'resume']).toContain(refusal.what);
  // Refusals go to the aggregated refusal log, never to the decision log.
  expect(run.s.decisions.map((d) => d.reason).join('\n')).not.toContain(message);
});

test('every refusal is logged, and refusals change nothing else', () => {
  const run = awaitingApproval();
  run.vote('approve', { by: 'mallory' }, T0);
  run.vote('approve', { by: 'dave' }, T0);
  run.vote('reject', { by: 'bob' }, T0);
  run.resume({ by: 'bob' }, T0);
  expect(run.s.decisions.map((d) => d.kind)).toEqual(['approval_requested']);
  expect(run.s.refusals.map((r) => [r.who, r.what, r.count])).toEqual([
    ['mallory', 'approve', 1],
    ['dave', 'approve', 1],
    ['bob', 'reject', 1],
    ['bob', 'resume', 1],
  ]);
  expect(run.s.refusalsTotal).toBe(4);
  expect(run.s.pendingApproval!.received).toEqual([]);
  expect(run.s.stop).toBeNull();
  expect(run.s.paused).toBeNull();
  expect(run.phase).toBe('awaiting_approval');
});

// ---- votes ----

test('openApproval records the request and its expiry', () => {
  const run = awaitingApproval();
  expect(run.s.pendingApproval).toMatchObject({
    step: 1,
    approvers: ['alice', 'bob', 'carol'],
    required: 2,
    received: [],
    expiresAt: '2025-01-15T16:00:00.000Z',
    onTimeout: 'abort',
  });
  expect(last(run)).toMatchObject({
    kind: 'approval_requested',
    by: 'promote',
    reason: 'approval needed before step 2 (2 of alice, bob, carol)',
  });
});

test('2 of 3: the first approval is not enough, the second grants', () => {
  const run = awaitingApproval();
  expect(run.approvalGranted).toBe(false);

  expect(run.vote('approve', { by: 'alice', comment: ' looks fine ' }, T0 + 1000)).toEqual({
    accepted: true,
    message: 'approval counted (1 of 2)',
    received: 1,
    required: 2,
  });
  expect(run.approvalGranted).toBe(false);
  expect(run.phase).toBe('awaiting_approval');

  expect(run.vote('approve', { by: 'carol' }, T0 + 2000)).toMatchObject({
    accepted: true,
    message: 'approval counted (2 of 2)',
    received: 2,
  });
  expect(run.approvalGranted).toBe(true);
  expect(run.s.pendingApproval!.received).toEqual([
    { by: 'alice', at: '2025-01-15T12:00:01.000Z', comment: 'looks fine' },
    { by: 'carol', at: '2025-01-15T12:00:02.000Z' },
  ]);
  expect(last(run)).toMatchObject({
    kind: 'approved',
    by: 'carol',
    reason: 'approved',
    evidence: ['step 2: 2 of 2 approvals'],
  });
  expect(run.status().pendingApproval).toMatchObject({
    received: 2,
    required: 2,
    votes: run.s.pendingApproval!.received,
  });
});

test('approvalGranted is false with no pending approval', () => {
  expect(newRun().approvalGranted).toBe(false);
});

test('a reject with a reason requests a stop with outcome rejected', () => {
  const run = awaitingApproval();
  run.vote('approve', { by: 'alice' }, T0);
  const result = run.vote('reject', { by: 'bob', reason: 'drift on new merchants' }, T0);
  expect(result).toEqual({
    accepted: true,
    message: 'rejected step 2; rolling back',
    received: 1,
    required: 2,
  });
  expect(run.s.stop).toEqual({
    outcome: 'rejected',
    by: 'bob',
    reason: 'step 2 rejected by bob: drift on new merchants',
  });
  expect(run.stopping).toBe(true);
  expect(run.s.pendingApproval!.rejectedBy).toEqual({ by: 'bob', reason: 'drift on new merchants' });
  expect(run.s.decisions.slice(-2).map((d) => [d.kind, d.by])).toEqual([
    ['rejected', 'bob'],
    ['stop', 'bob'],
  ]);
  expect(run.status().reason).toBe('step 2 rejected by bob: drift on new merchants');
});

// ---- abort, pause, resume ----

test('abort requests a stop with outcome aborted', () => {
  const run = awaitingApproval();
  expect(run.abort({ by: 'alice', reason: 'bad feature' }, T0)).toEqual({
    accepted: true,
    message: 'abort accepted; rolling back',
  });
  expect(run.s.stop).toEqual({ outcome: 'aborted', by: 'alice', reason: 'aborted by alice: bad feature' });
  expect(run.s.decisions.slice(-2).map((d) => d.kind)).toEqual(['abort', 'stop']);
});

test('the first stop request wins', () => {
  const run = newRun();
  run.requestStop({ outcome: 'aborted', by: 'alice', reason: 'first' }, T0);
  run.requestStop({ outcome: 'rolled_back', by: 'promote', reason: 'second' }, T0);
  expect(run.s.stop).toEqual({ outcome: 'aborted', by: 'alice', reason: 'first' });
  expect(run.s.decisions.filter((d) => d.kind === 'stop').map((d) => d.reason)).toEqual([
    'aborted: first',
    'rolled_back not applied (already aborted): second',
  ]);
});

test('a later stop request is recorded in the decision log', () => {
  const run = newRun();
  run.requestStop({ outcome: 'aborted', by: 'alice', reason: 'first' }, T0);
  const before = run.s.decisions.length;
  run.requestStop({ outcome: 'rolled_back', by: 'promote', reason: 'error_rate breach' }, T0);
  expect(run.s.decisions.length).toBe(before + 1);
  expect(last(run).reason).toContain('error_rate breach');
});

test('pause then resume', () => {
  const run = awaitingApproval();
  expect(run.pause({ by: 'alice', reason: 'investigating' }, T0)).toEqual({
    accepted: true,
    message: 'paused',
  });
  expect(run.s.paused).toEqual({ by: 'alice', reason: 'investigating', at: '2025-01-15T12:00:00.000Z' });
  expect(run.phase).toBe('paused');
  expect(run.resume({ by: 'bob' }, T0)).toEqual({ accepted: true, message: 'resumed' });
  expect(run.s.paused).toBeNull();
  expect(last(run)).toMatchObject({
    kind: 'resumed',
    by: 'bob',
    reason: 'resumed (was paused by alice: investigating)',
  });
  expect(run.phase).toBe('awaiting_approval');
});

test('a system pause is by promote and needs no payload', () => {
  const run = newRun();
  expect(run.systemPause('paused', T0)).toEqual({ accepted: true, message: 'paused' });
  expect(run.s.paused).toEqual({ by: 'promote', reason: 'paused', at: '2025-01-15T12:00:00.000Z' });
});

// ---- checks and the decision log ----

test('recordChecks logs only verdict changes and always keeps the latest round', () => {
  const run = newRun();
  run.recordChecks([check('guardrail error_rate', 'Pass'), check('guardrail latency_p99_ms', 'Pass')], T0);
  expect(run.s.decisions.map((d) => d.reason)).toEqual([
    'guardrail error_rate: Pass',
    'guardrail latency_p99_ms: Pass',
  ]);

  run.recordChecks(
    [check('guardrail error_rate', 'Pass'), check('guardrail latency_p99_ms', 'Pass')],
    T0 + 1,
  );
  expect(run.s.decisions).toHaveLength(2);

  const round = [check('guardrail error_rate', 'Fail'), check('guardrail latency_p99_ms', 'Pass')];
  run.recordChecks(round, T0 + 2);
  expect(run.s.decisions).toHaveLength(3);
  expect(last(run)).toMatchObject({
    kind: 'check',
    by: 'promote',
    reason: 'guardrail error_rate: Fail',
    evidence: ['guardrail error_rate is Fail'],
  });
  expect(run.s.lastChecks).toEqual(round);
  expect(run.status().lastChecks).toEqual(round);
});

test('recordChecks counts consecutive errors per subject and resets on any other verdict', () => {
  const run = newRun();
  run.recordChecks([check('a', 'Error'), check('b', 'Pass')], T0);
  run.recordChecks([check('a', 'Error'), check('b', 'Error')], T0);
  expect(run.s.consecutiveErrors).toEqual({ a: 2, b: 1 });
  run.recordChecks([check('a', 'Inconclusive'), check('b', 'Error')], T0);
  expect(run.s.consecutiveErrors).toEqual({ a: 0, b: 2 });
});

test('repeating decision kinds keep their newest entries and count the dropped; the rest are never dropped', () => {
  const run = newRun();
  const cap = DECISION_CAPS.check!;
  run.decide('traffic', 'promote', 'step 1', T0);
  for (let i = 0; i < cap + 5; i++) run.decide('check', 'promote', `#${i}`, T0 + i);
  run.decide('traffic', 'promote', 'step 2', T0);
  const checks = run.s.decisions.filter((d) => d.kind === 'check');
  expect(checks).toHaveLength(cap);
  expect(checks[0]!.reason).toBe('#5');
  expect(run.s.decisionsDropped).toBe(5);
  expect(run.status().decisionsDropped).toBe(5);
  expect(run.s.decisions.filter((d) => d.kind === 'traffic').map((d) => d.reason)).toEqual([
    'step 1',
    'step 2',
  ]);
});

test('decision text and evidence are bounded whatever a provider answers', () => {
  const run = newRun();
  run.decide(
    'gate',
    'promote',
    'x'.repeat(1_000_000),
    T0,
    Array.from({ length: 1000 }, () => 'e'.repeat(100_000)),
  );
  expect(JSON.stringify(last(run)).length).toBeLessThan(50_000);
});

test('10,000 hostile messages leave the state small and the audit trail intact', () => {
  const run = awaitingApproval();
  run.vote('approve', { by: 'alice', comment: 'ok' }, T0);
  const huge = 'x'.repeat(700_000);
  for (let i = 0; i < 10_000; i++) {
    const t = T0 + i;
    switch (i % 8) {
      case 0:
        run.vote('approve', { by: huge }, t);
        break;
      case 1:
        run.vote('approve', { by: `mallory-${i}` }, t); // distinct valid names, each refused
        break;
      case 2:
        run.abort({ by: `eve-${i}`, reason: huge }, t);
        break;
      case 3:
        run.vote('reject', { by: 'bob', reason: 'y'.repeat(3000) }, t);
        break;
      case 4:
        run.pause({ by: `p-${i}`, reason: 'z'.repeat(1999) }, t);
        break;
      case 5:
        run.resume({ by: `r-${i}`, reason: 'z'.repeat(1999) }, t);
        break;
      case 6:
        run.vote('approve', { by: 'a\nb' }, t);
        break;
      default:
        run.vote('approve', [huge], t);
    }
  }
  const bytes = JSON.stringify(run.s).length;
  // Temporal refuses payloads over 2 MB; the carried state stays far below it.
  expect(bytes).toBeLessThan(400_000);
  expect(run.s.refusals.length).toBeLessThanOrEqual(MAX_REFUSALS);
  expect(run.s.refusalsTotal).toBeGreaterThan(5000);
  // The accepted vote and the stop-free state are still there.
  expect(run.s.decisions.find((d) => d.kind === 'approved')).toMatchObject({ by: 'alice' });
  expect(run.s.pendingApproval!.received.map((v) => v.by)).toEqual(['alice']);
  expect(JSON.stringify(run.s)).not.toContain('x'.repeat(3000));
});

// ---- phase ----

const phases: [string, (run: PromotionRun) => void, string][] = [
  ['staging', () => undefined, 'staging'],
  ['validating', (r) => (r.s.stage = 'validating'), 'validating'],
  ['shadow', (r) => (r.s.stage = 'shadow'), 'shadow'],
  ['canary', (r) => (r.s.stage = 'canary'), 'canary'],
  ['watching', (r) => (r.s.stage = 'watching'), 'watching'],
  ['finalizing shows as watching', (r) => (r.s.stage = 'finalizing'), 'watching'],
  ['done stage shows as watching', (r) => (r.s.stage = 'done'), 'watching'],
  [
    'pending approval',
    (r) => r.openApproval(1, plan.canary.steps[1]!.approval!, HOUR, T0),
    'awaiting_approval',
  ],
  [
    'paused beats awaiting_approval',
    (r) => {
      r.openApproval(1, plan.canary.steps[1]!.approval!, HOUR, T0);
      r.pause({ by: 'alice' }, T0);
    },
    'paused',
  ],
  [
    'rolling_back beats paused',
    (r) => {
      r.pause({ by: 'alice' }, T0);
      r.s.rollingBack = true;
    },
    'rolling_back',
  ],
  [
    'an outcome beats rolling back',
    (r) => {
      r.s.rollingBack = true;
      r.s.outcome = 'rolled_back';
    },
    'completed',
  ],
];

test.each(phases)('phase: %s', (_name, setup, phase) => {
  const run = newRun();
  setup(run);
  expect(run.phase).toBe(phase);
  expect(run.status().phase).toBe(phase);
});

test('status reports the current step and its traffic', () => {
  const run = newRun();
  run.s.stepIndex = 1;
  run.s.trafficPercent = 50;
  expect(run.status()).toMatchObject({
    step: { index: 1, total: 3, traffic: 50 },
    trafficPercent: 50,
    planHash: hashPlan(plan),
  });
});
