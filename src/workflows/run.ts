/**
 * PromotionRun: the promotion's state and the rules for the messages that change it. No Temporal
 * imports and no clock of its own (times are passed in), so the rules are unit-testable and the
 * same code validates both signals and updates.
 */
import type { Assessment, Verdict } from '../analysis/types';
import type { Approval } from '../plan/schema';
import { parseMessage, type MessageKind, type MessageResult } from './messages';
import type {
  Decision,
  DecisionKind,
  Phase,
  PromotionInput,
  PromotionState,
  PromotionStatus,
  StopRequest,
} from './types';

/**
 * Decision kinds that can repeat without bound (verdict flaps over a days-long watch, pause/resume
 * cycles, hand-overs) keep at most this many entries each; older ones are dropped and counted.
 * Every other kind (votes, stops, traffic changes, gates, verdicts that stop the promotion,
 * rollback steps) is bounded by the plan and never dropped.
 */
export const DECISION_CAPS: Partial<Record<DecisionKind, number>> = {
  check: 200,
  paused: 50,
  resumed: 50,
  approval_requested: 50,
  approval_timeout: 50,
  continued_as_new: 20,
  rollback_error: 50,
  lease: 50,
};

/** Distinct refusal entries kept; beyond it refusals are counted in one catch-all entry. */
export const MAX_REFUSALS = 100;
/** Bounds of decision text (characters) and evidence items. */
export const TEXT_LIMIT = 2000;
export const EVIDENCE_LIMIT = 20;

/** Text cut to `max` characters (marked), so no provider answer or message can grow the state. */
export function clip(text: string, max = TEXT_LIMIT): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

const SYSTEM = 'promote';

export function initialState(input: PromotionInput, id: string, nowMs: number): PromotionState {
  return {
    id,
    model: input.model,
    candidate: input.candidate,
    champion: null,
    startedBy: input.startedBy,
    startedAt: new Date(nowMs).toISOString(),
    plan: input.plan,
    planHash: input.planHash,
    stage: 'staging',
    stepIndex: -1,
    appliedStep: -1,
    liveSinceMs: null,
    approvedSteps: [],
    trafficPercent: 0,
    pendingApproval: null,
    paused: null,
    stop: null,
    outcome: null,
    rollingBack: false,
    touched: {
      challengerAlias: null,
      championAlias: null,
      policy: null,
      deployed: false,
      traffic: false,
      shadow: false,
      championDecommissioned: false,
    },
    wait: null,
    shadowStartedAtMs: null,
    watchStartedAtMs: null,
    gatesPassed: 0,
    extensions: 0,
    splits: [],
    srmAccepted: false,
    sliceValues: {},
    lastChecks: [],
    consecutiveErrors: {},
    decisions: [],
    decisionsDropped: 0,
    refusals: [],
    refusalsTotal: 0,
    committed: false,
    lease: null,
    compensation: null,
    continuedAsNew: 0,
  };
}

/** Slice checks kept in `lastChecks` at most, the most severe first. */
const MAX_SLICE_CHECKS = 20;
const SEVERITY: readonly Verdict[] = ['Fail', 'Error', 'Inconclusive', 'NoData', 'Pass'];

export class PromotionRun {
  constructor(readonly s: PromotionState) {}

  get done(): boolean {
    return this.s.outcome !== null;
  }

  /** True once something asked the promotion to stop (abort, reject, breach, failure). */
  get stopping(): boolean {
    return this.s.stop !== null;
  }

  get phase(): Phase {
    if (this.s.outcome !== null) return 'completed';
    if (this.s.rollingBack) return 'rolling_back';
    if (this.s.paused) return 'paused';
    if (this.s.pendingApproval) return 'awaiting_approval';
    switch (this.s.stage) {
      case 'staging':
        return 'staging';
      case 'validating':
        return 'validating';
      case 'shadow':
        return 'shadow';
      case 'canary':
        return 'canary';
      case 'watching':
      case 'finalizing':
      case 'done':
        return 'watching';
    }
  }

  decide(kind: DecisionKind, by: string, reason: string, nowMs: number, evidence: string[] = []): Decision {
    const decision: Decision = {
      at: new Date(nowMs).toISOString(),
      kind,
      by: clip(by, 200),
      reason: clip(reason),
      evidence: evidence.slice(0, EVIDENCE_LIMIT).map((e) => clip(e)),
    };
    const decisions = this.s.decisions;
    decisions.push(decision);
    const cap = DECISION_CAPS[kind];
    if (cap !== undefined) {
      let count = 0;
      for (const d of decisions) if (d.kind === kind) count++;
      if (count > cap) {
        decisions.splice(
          decisions.findIndex((d) => d.kind === kind),
          1,
        );
        this.s.decisionsDropped++;
      }
    }
    return decision;
  }

  /** Asks the promotion to stop; the first request wins, later ones are recorded only. */
  requestStop(stop: StopRequest, nowMs: number, evidence: string[] = []): void {
    if (this.s.stop || this.done || this.s.committed) {
      const current = this.s.outcome ?? this.s.stop?.outcome ?? 'past the point of no return';
      this.decide(
        'stop',
        stop.by,
        `${stop.outcome} not applied (already ${current}): ${stop.reason}`,
        nowMs,
        evidence,
      );
      return;
    }
    this.s.stop = stop;
    this.decide('stop', stop.by, `${stop.outcome}: ${stop.reason}`, nowMs, evidence);
  }

  // ---- messages ----

  /** Records a refusal in the aggregated refusal log and answers with the reason. */
  private refuse(why: string, who: string, what: MessageKind, nowMs: number): MessageResult {
    const at = new Date(nowMs).toISOString();
    const refusals = this.s.refusals;
    this.s.refusalsTotal++;
    let entry = refusals.find((r) => r.who === who && r.what === what && r.why === why);
    if (!entry && refusals.length >= MAX_REFUSALS - 1) {
      // Full: everything new is counted in one catch-all entry.
      entry = refusals.find((r) => r.who === '*');
      if (!entry) {
        entry = {
          who: '*',
          what: '*',
          why: 'more distinct refusals than the log keeps',
          count: 0,
          first: at,
          last: at,
        };
        refusals.push(entry);
      }
    }
    if (entry) {
      entry.count++;
      entry.last = at;
    } else refusals.push({ who, what, why: clip(why, 500), count: 1, first: at, last: at });
    return { accepted: false, message: why };
  }

  /** Parses a message; refusals are recorded. Undefined when refused (the result says why). */
  private parse(
    kind: MessageKind,
    payload: unknown,
    nowMs: number,
  ): { by: string; note: string | undefined } | MessageResult {
    const parsed = parseMessage(kind, payload);
    if (!parsed.ok) return this.refuse(parsed.why, parsed.who, kind, nowMs);
    return parsed.value;
  }

  /** Approve or reject: the one rule set shared by the signal and the update paths. */
  vote(kind: 'approve' | 'reject', payload: unknown, nowMs: number): MessageResult {
    const parsed = this.parse(kind, payload, nowMs);
    if ('accepted' in parsed) return parsed;
    const { by, note } = parsed;
    if (this.done || this.stopping) return this.refuse('the promotion is no longer running', by, kind, nowMs);
    const pending = this.s.pendingApproval;
    if (!pending) return this.refuse('no approval is pending', by, kind, nowMs);
    if (by === this.s.startedBy) {
      return this.refuse(
        `${by} started this promotion and cannot ${kind} it (no self-approval)`,
        by,
        kind,
        nowMs,
      );
    }
    if (!pending.approvers.includes(by)) {
      return this.refuse(
        `${by} is not an approver of step ${pending.step + 1} (allowed: ${pending.approvers.join(', ')})`,
        by,
        kind,
        nowMs,
      );
    }
    if (pending.received.some((v) => v.by === by)) {
      return this.refuse(`${by} has already approved step ${pending.step + 1}`, by, kind, nowMs);
    }
    if (kind === 'reject') {
      pending.rejectedBy = { by, reason: note! };
      this.decide('rejected', by, note!, nowMs, [`step ${pending.step + 1}`]);
      this.requestStop(
        { outcome: 'rejected', by, reason: `step ${pending.step + 1} rejected by ${by}: ${note}` },
        nowMs,
      );
      return {
        accepted: true,
        message: `rejected step ${pending.step + 1}; rolling back`,
        received: pending.received.length,
        required: pending.required,
      };
    }
    pending.received.push({ by, at: new Date(nowMs).toISOString(), ...(note ? { comment: note } : {}) });
    const count = `${pending.received.length} of ${pending.required}`;
    this.decide('approved', by, note ?? 'approved', nowMs, [`step ${pending.step + 1}: ${count} approvals`]);
    return {
      accepted: true,
      message: `approval counted (${count})`,
      received: pending.received.length,
      required: pending.required,
    };
  }

  abort(payload: unknown, nowMs: number): MessageResult {
    const parsed = this.parse('abort', payload, nowMs);
    if ('accepted' in parsed) return parsed;
    const { by, note: reason } = parsed;
    if (this.done) return this.refuse('the promotion has already completed', by, 'abort', nowMs);
    if (this.s.committed)
      return this.refuse(
        `too late: ${this.s.candidate} is already the champion with all traffic and the promotion is finishing; promote the previous version to go back`,
        by,
        'abort',
        nowMs,
      );
    if (this.stopping)
      return this.refuse(`the promotion is already stopping (${this.s.stop!.outcome})`, by, 'abort', nowMs);
    this.decide('abort', by, reason!, nowMs);
    this.requestStop({ outcome: 'aborted', by, reason: `aborted by ${by}: ${reason}` }, nowMs);
    return { accepted: true, message: 'abort accepted; rolling back' };
  }

  pause(payload: unknown, nowMs: number): MessageResult {
    const parsed = this.parse('pause', payload, nowMs);
    if ('accepted' in parsed) return parsed;
    return this.pauseAs(parsed.by, parsed.note ?? 'paused', nowMs);
  }

  /** Pauses for the workflow itself (NoData, Inconclusive, a sample ratio mismatch, approval timeout). */
  systemPause(reason: string, nowMs: number, cause?: 'srm' | 'verdict'): MessageResult {
    return this.pauseAs(SYSTEM, reason, nowMs, cause);
  }

  private pauseAs(by: string, reason: string, nowMs: number, cause?: 'srm' | 'verdict'): MessageResult {
    if (this.done || this.stopping || this.s.committed)
      return this.refuse('the promotion is no longer running', by, 'pause', nowMs);
    if (this.s.paused) return this.refuse(`already paused by ${this.s.paused.by}`, by, 'pause', nowMs);
    this.s.paused = { by, reason, at: new Date(nowMs).toISOString(), ...(cause ? { cause } : {}) };
    this.decide('paused', by, reason, nowMs);
    return { accepted: true, message: 'paused' };
  }

  resume(payload: unknown, nowMs: number): MessageResult {
    const parsed = this.parse('resume', payload, nowMs);
    if ('accepted' in parsed) return parsed;
    const { by, note } = parsed;
    if (this.done || this.stopping)
      return this.refuse('the promotion is no longer running', by, 'resume', nowMs);
    if (!this.s.paused) return this.refuse('the promotion is not paused', by, 'resume', nowMs);
    const was = this.s.paused;
    this.s.paused = null;
    if (was.cause === 'srm') this.s.srmAccepted = true;
    this.decide('resumed', by, note ?? `resumed (was paused by ${was.by}: ${was.reason})`, nowMs);
    return { accepted: true, message: 'resumed' };
  }

  /** The point of no return: from here an abort is refused as too late. */
  commit(nowMs: number): void {
    this.s.committed = true;
    this.decide('lease', SYSTEM, 'traffic lease released: past the point of no return', nowMs);
  }

  // ---- approvals ----

  openApproval(step: number, approval: Approval, timeoutMs: number, nowMs: number): void {
    this.s.pendingApproval = {
      step,
      approvers: approval.approvers,
      required: approval.required,
      received: [],
      rejectedBy: null,
      openedAt: new Date(nowMs).toISOString(),
      expiresAt: new Date(nowMs + timeoutMs).toISOString(),
      timeoutMs,
      onTimeout: approval.onTimeout,
    };
    this.decide(
      'approval_requested',
      SYSTEM,
      `approval needed before step ${step + 1} (${approval.required} of ${approval.approvers.join(', ')})`,
      nowMs,
    );
  }

  get approvalGranted(): boolean {
    const p = this.s.pendingApproval;
    return p !== null && p.received.length >= p.required;
  }

  // ---- guardrail bookkeeping ----

  /**
   * The candidate's traffic changed: the current split ends when the change was asked for
   * (`changingAtMs`) and the new one begins when it was applied (`nowMs`); requests in between
   * may have seen either route and count in neither.
   */
  newSplit(percent: number, changingAtMs: number, nowMs: number): void {
    const current = this.s.splits[this.s.splits.length - 1];
    if (current && current.toMs === null) current.toMs = Math.max(current.fromMs, changingAtMs);
    this.s.splits.push({ fromMs: nowMs, toMs: null, percent });
  }

  /**
   * Records a round of guardrail assessments. Only changes of verdict go to the decision log
   * (checks run every interval for days); the latest round is always in `lastChecks`.
   */
  recordChecks(assessments: Assessment[], nowMs: number): void {
    const before = new Map(this.s.lastChecks.map((a) => [a.subject, a.verdict]));
    for (const a of assessments) {
      // A plan may have hundreds of slice checks: only a slice's Fail goes to the decision log.
      const logged = before.get(a.subject) !== a.verdict && (a.slice === undefined || a.verdict === 'Fail');
      if (logged) this.decide('check', SYSTEM, `${a.subject}: ${a.verdict}`, nowMs, [a.evidence]);
      if (a.verdict === 'Error')
        this.s.consecutiveErrors[a.subject] = (this.s.consecutiveErrors[a.subject] ?? 0) + 1;
      else if (a.slice === undefined) this.s.consecutiveErrors[a.subject] = 0;
      else delete this.s.consecutiveErrors[a.subject];
    }
    // Every overall check, and the slice checks most in need of attention (bounded state).
    const slices = assessments
      .filter((a) => a.slice !== undefined)
      .sort((a, b) => SEVERITY.indexOf(a.verdict) - SEVERITY.indexOf(b.verdict))
      .slice(0, MAX_SLICE_CHECKS);
    this.s.lastChecks = [...assessments.filter((a) => a.slice === undefined), ...slices].map((a) => ({
      ...a,
      evidence: clip(a.evidence),
    }));
  }

  status(): PromotionStatus {
    const s = this.s;
    const steps = s.plan.canary.steps;
    const p = s.pendingApproval;
    return {
      id: s.id,
      model: s.model,
      candidate: s.candidate,
      champion: s.champion,
      phase: this.phase,
      outcome: s.outcome,
      reason: s.stop?.reason ?? null,
      trafficPercent: s.trafficPercent,
      step: { index: s.stepIndex, total: steps.length, traffic: steps[s.stepIndex]?.traffic ?? null },
      pendingApproval: p
        ? {
            step: p.step,
            approvers: p.approvers,
            required: p.required,
            received: p.received.length,
            votes: p.received,
            expiresAt: p.expiresAt,
          }
        : null,
      paused: s.paused,
      lastChecks: s.lastChecks,
      decisions: s.decisions,
      decisionsDropped: s.decisionsDropped,
      refusals: [...s.refusals].sort((a, b) => (a.last < b.last ? 1 : a.last > b.last ? -1 : 0)),
      refusalsTotal: s.refusalsTotal,
      lease: s.lease,
      compensation: s.compensation,
      planHash: s.planHash,
      startedBy: s.startedBy,
      startedAt: s.startedAt,
      continuedAsNew: s.continuedAsNew,
    };
  }
}
