/**
 * PromotionRun: the promotion's state and the rules for the messages that change it. No Temporal
 * imports and no clock of its own (times are passed in), so the rules are unit-testable and the
 * same code validates both signals and updates.
 */
import type { Assessment } from '../analysis/types';
import type { Approval } from '../plan/schema';
import type { MessageResult } from './messages';
import type {
  Decision,
  DecisionKind,
  Phase,
  PromotionInput,
  PromotionState,
  PromotionStatus,
  StopRequest,
} from './types';

/** Decision-log entries kept; older ones are dropped and counted (keeps workflow state bounded). */
export const MAX_DECISIONS = 1000;

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
    lastChecks: [],
    consecutiveErrors: {},
    decisions: [],
    decisionsDropped: 0,
    continuedAsNew: 0,
  };
}

/**
 * A string field of a message payload. Payloads are typed `unknown` on purpose: signals sent from
 * the Temporal UI or `temporal workflow signal` arrive as arbitrary JSON.
 */
function text(payload: unknown, field: string): string | undefined {
  const value =
    payload && typeof payload === 'object' ? (payload as Record<string, unknown>)[field] : undefined;
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

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
    const decision: Decision = { at: new Date(nowMs).toISOString(), kind, by, reason, evidence };
    this.s.decisions.push(decision);
    if (this.s.decisions.length > MAX_DECISIONS) {
      this.s.decisions.splice(0, this.s.decisions.length - MAX_DECISIONS);
      this.s.decisionsDropped++;
    }
    return decision;
  }

  /** Asks the promotion to stop; the first request wins, later ones are recorded only. */
  requestStop(stop: StopRequest, nowMs: number, evidence: string[] = []): void {
    if (this.s.stop || this.done) {
      const current = this.s.outcome ?? this.s.stop!.outcome;
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

  private refuse(message: string, by: string, what: string, nowMs: number): MessageResult {
    this.decide('refused', by, `${what} refused: ${message}`, nowMs);
    return { accepted: false, message };
  }

  /** Approve or reject: the one rule set shared by the signal and the update paths. */
  vote(kind: 'approve' | 'reject', payload: unknown, nowMs: number): MessageResult {
    const by = text(payload, 'by');
    const note = kind === 'approve' ? text(payload, 'comment') : text(payload, 'reason');
    if (!by) return this.refuse(`${kind} needs a "by" naming the user`, 'unknown', kind, nowMs);
    if (kind === 'reject' && !note) return this.refuse('reject needs a reason', by, kind, nowMs);
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
    const by = text(payload, 'by');
    const reason = text(payload, 'reason');
    if (!by) return this.refuse('abort needs a "by" naming the user', 'unknown', 'abort', nowMs);
    if (!reason) return this.refuse('abort needs a reason', by, 'abort', nowMs);
    if (this.done) return this.refuse('the promotion has already completed', by, 'abort', nowMs);
    if (this.stopping)
      return this.refuse(`the promotion is already stopping (${this.s.stop!.outcome})`, by, 'abort', nowMs);
    this.decide('abort', by, reason, nowMs);
    this.requestStop({ outcome: 'aborted', by, reason: `aborted by ${by}: ${reason}` }, nowMs);
    return { accepted: true, message: 'abort accepted; rolling back' };
  }

  pause(payload: unknown, nowMs: number, system = false): MessageResult {
    const by = system ? SYSTEM : text(payload, 'by');
    const reason = text(payload, 'reason') ?? 'paused';
    if (!by) return this.refuse('pause needs a "by" naming the user', 'unknown', 'pause', nowMs);
    if (this.done || this.stopping)
      return this.refuse('the promotion is no longer running', by, 'pause', nowMs);
    if (this.s.paused) return this.refuse(`already paused by ${this.s.paused.by}`, by, 'pause', nowMs);
    this.s.paused = { by, reason, at: new Date(nowMs).toISOString() };
    this.decide('paused', by, reason, nowMs);
    return { accepted: true, message: 'paused' };
  }

  resume(payload: unknown, nowMs: number): MessageResult {
    const by = text(payload, 'by');
    if (!by) return this.refuse('resume needs a "by" naming the user', 'unknown', 'resume', nowMs);
    if (this.done || this.stopping)
      return this.refuse('the promotion is no longer running', by, 'resume', nowMs);
    if (!this.s.paused) return this.refuse('the promotion is not paused', by, 'resume', nowMs);
    const was = this.s.paused;
    this.s.paused = null;
    this.decide(
      'resumed',
      by,
      text(payload, 'reason') ?? `resumed (was paused by ${was.by}: ${was.reason})`,
      nowMs,
    );
    return { accepted: true, message: 'resumed' };
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
   * Records a round of guardrail assessments. Only changes of verdict go to the decision log
   * (checks run every interval for days); the latest round is always in `lastChecks`.
   */
  recordChecks(assessments: Assessment[], nowMs: number): void {
    const before = new Map(this.s.lastChecks.map((a) => [a.subject, a.verdict]));
    for (const a of assessments) {
      if (before.get(a.subject) !== a.verdict)
        this.decide('check', SYSTEM, `${a.subject}: ${a.verdict}`, nowMs, [a.evidence]);
      this.s.consecutiveErrors[a.subject] =
        a.verdict === 'Error' ? (this.s.consecutiveErrors[a.subject] ?? 0) + 1 : 0;
    }
    this.s.lastChecks = assessments;
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
      planHash: s.planHash,
      startedBy: s.startedBy,
      startedAt: s.startedAt,
      continuedAsNew: s.continuedAsNew,
    };
  }
}
