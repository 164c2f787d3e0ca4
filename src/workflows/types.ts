/** Promotion state and status shapes, shared by the workflow, the CLI and tests. Pure types. */
import type { Assessment } from '../analysis/types';
import type { Plan } from '../plan/schema';

export const PHASES = [
  'staging',
  'validating',
  'shadow',
  'canary',
  'awaiting_approval',
  'paused',
  'watching',
  'rolling_back',
  'completed',
] as const;
export type Phase = (typeof PHASES)[number];

export const OUTCOMES = ['succeeded', 'rolled_back', 'aborted', 'rejected', 'failed'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export type Stage = 'staging' | 'validating' | 'shadow' | 'canary' | 'watching' | 'finalizing' | 'done';

export type DecisionKind =
  | 'started'
  | 'staged'
  | 'gate'
  | 'shadow'
  | 'traffic'
  | 'check'
  | 'bake_extended'
  | 'approval_requested'
  | 'approved'
  | 'rejected'
  | 'approval_timeout'
  | 'paused'
  | 'resumed'
  | 'abort'
  | 'stop'
  | 'rollback'
  | 'rollback_error'
  | 'watch'
  | 'promoted'
  | 'completed'
  | 'continued_as_new'
  | 'lease';

export interface Decision {
  /** ISO time. */
  at: string;
  kind: DecisionKind;
  /** Who: a user name, or `promote` for the workflow itself. */
  by: string;
  reason: string;
  evidence: string[];
}

export interface Vote {
  by: string;
  at: string;
  comment?: string;
}

export interface PendingApproval {
  step: number;
  approvers: string[];
  required: number;
  received: Vote[];
  rejectedBy: { by: string; reason: string } | null;
  openedAt: string;
  /** ISO time; null while paused after a timeout. */
  expiresAt: string | null;
  timeoutMs: number;
  onTimeout: 'abort' | 'pause';
}

/** A wait in progress (bake, approval, shadow, watch); survives continue-as-new. */
export interface WaitClock {
  id: string;
  /** Time counted toward the wait's duration, ms (bakes do not count paused time). */
  elapsedMs: number;
  sinceCheckMs: number;
}

/** Everything done to the world that a rollback may have to undo. */
export interface Touched {
  /** Value of the challenger alias before this promotion set it. */
  challengerAlias: { previous: string | null } | null;
  /** Value of the champion alias before this promotion moved it. */
  championAlias: { previous: string | null } | null;
  /** The candidate's policy before this promotion set it. */
  policy: { previous: NonNullable<Plan['policy']>['thresholds'] | null } | null;
  deployed: boolean;
  traffic: boolean;
  shadow: boolean;
  championDecommissioned: boolean;
}

/** Refused messages, aggregated: one entry per who/what/why, so hostile traffic cannot evict the log. */
export interface Refusal {
  /** The sender's name when it was valid, else `(invalid sender)`. */
  who: string;
  /** The message: approve, reject, abort, pause, resume. */
  what: string;
  why: string;
  count: number;
  /** ISO times of the first and the last such refusal. */
  first: string;
  last: string;
}

/** The traffic lease the promotion holds on the data plane (docs/fail-safe.md). */
export interface LeaseHold {
  holder: string;
  ttlMs: number;
  renewEveryMs: number;
  /** ISO times. */
  acquiredAt: string;
  renewedAt: string;
  /** Renewals in a row that could not reach the data plane. */
  failures: number;
  lastError: string | null;
}

/** A compensation that keeps failing: it is retried (capped backoff) until it succeeds. */
export interface FailingCompensation {
  step: string;
  attempts: number;
  /** ISO time of the first failure. */
  since: string;
  error: string;
}

export interface StopRequest {
  outcome: Exclude<Outcome, 'succeeded'>;
  by: string;
  reason: string;
}

export interface PromotionState {
  id: string;
  model: string;
  candidate: string;
  champion: string | null;
  startedBy: string;
  startedAt: string;
  plan: Plan;
  planHash: string;
  stage: Stage;
  /** Current canary step index; -1 before the canary. */
  stepIndex: number;
  /** Index of the step whose traffic is live; -1 before the first shift. */
  appliedStep: number;
  /** When the live traffic level was applied, epoch ms (start of the guardrail window). */
  liveSinceMs: number | null;
  approvedSteps: number[];
  trafficPercent: number;
  pendingApproval: PendingApproval | null;
  paused: PauseInfo | null;
  stop: StopRequest | null;
  outcome: Outcome | null;
  rollingBack: boolean;
  touched: Touched;
  wait: WaitClock | null;
  shadowStartedAtMs: number | null;
  watchStartedAtMs: number | null;
  gatesPassed: number;
  extensions: number;
  /**
   * The traffic splits since the first shift (at most one per canary step): the live checks test
   * the counts of every split, so a verdict covers the whole promotion and survives a restart.
   */
  splits: Split[];
  /** A human resumed after a sample ratio mismatch: it no longer stops the promotion. */
  srmAccepted: boolean;
  /**
   * The values chosen so far per top-N slice name (added from the traffic as they appear, never
   * replaced, at most N); slices with listed values take them from the plan.
   */
  sliceValues: Record<string, string[]>;
  lastChecks: Assessment[];
  consecutiveErrors: Record<string, number>;
  decisions: Decision[];
  decisionsDropped: number;
  refusals: Refusal[];
  refusalsTotal: number;
  /** Past the point of no return: the candidate is the champion and the lease is released. */
  committed: boolean;
  lease: LeaseHold | null;
  compensation: FailingCompensation | null;
  continuedAsNew: number;
}

/** A slice dimension as the measuring activities take it: the values to read, and top-N to fill up. */
export interface SliceQuery {
  name: string;
  key: string;
  values: string[];
  /** Fill `values` up to this many from the traffic (most requests first); null: values are fixed. */
  top: number | null;
}

/** A period with one traffic split: the candidate's percent from `fromMs` to `toMs` (null: now). */
export interface Split {
  fromMs: number;
  toMs: number | null;
  percent: number;
}

export interface PauseInfo {
  by: string;
  reason: string;
  at: string;
  /** Why the workflow paused itself: srm (a resume accepts the mismatch) or a verdict. */
  cause?: 'srm' | 'verdict';
}

/** What `status` returns (and `promote status --json` prints). */
export interface PromotionStatus {
  id: string;
  model: string;
  candidate: string;
  champion: string | null;
  phase: Phase;
  outcome: Outcome | null;
  reason: string | null;
  trafficPercent: number;
  step: { index: number; total: number; traffic: number | null };
  pendingApproval: {
    step: number;
    approvers: string[];
    required: number;
    received: number;
    votes: Vote[];
    expiresAt: string | null;
  } | null;
  paused: PauseInfo | null;
  lastChecks: Assessment[];
  decisions: Decision[];
  decisionsDropped: number;
  /** Refused messages, aggregated (most recent first). */
  refusals: Refusal[];
  refusalsTotal: number;
  lease: LeaseHold | null;
  /** While rolling back: the compensation that keeps failing, if any. */
  compensation: FailingCompensation | null;
  planHash: string;
  startedBy: string;
  startedAt: string;
  continuedAsNew: number;
}

/** The workflow's input. `carried` is set only by continue-as-new. */
export interface PromotionInput {
  model: string;
  candidate: string;
  plan: Plan;
  planHash: string;
  startedBy: string;
  options?: {
    /** Continue-as-new once history reaches this many events (default: when the server suggests). */
    continueAsNewAfterEvents?: number;
  };
  carried?: PromotionState;
}

export interface PromotionResult {
  outcome: Outcome;
  reason: string | null;
  status: PromotionStatus;
}
