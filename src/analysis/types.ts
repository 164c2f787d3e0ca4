/** Measurements and verdicts: the data that flows from providers into the pure assessments. */

/** What an assessment concluded. NoData and Inconclusive are outcomes in their own right, never Pass. */
export const VERDICTS = ['Pass', 'Fail', 'Inconclusive', 'NoData', 'Error'] as const;
export type Verdict = (typeof VERDICTS)[number];

/**
 * One measured value of one metric for one version over a window. A provider that could not
 * measure returns phase `Error` with the reason instead of throwing, so the plan decides what it means.
 */
export interface Measurement {
  metric: string;
  version: string;
  /** The metric's value in its unit, or null when nothing was observed. */
  value: number | null;
  /** Observations behind the value (requests, labels, holdout rows, compared pairs). */
  samples: number;
  /** For rate metrics: the count of events (e.g. errors) among `samples`. */
  events?: number;
  phase: 'Ok' | 'Error';
  error?: string;
  /** Free-text detail from the provider (e.g. which features are missing). */
  detail?: string;
  /** Window measured, epoch ms. */
  fromMs?: number;
  toMs?: number;
}

/**
 * The test behind a verdict, for humans and machines: what was tested, how, on how much data, and
 * how far it is from deciding.
 */
export interface TestEvidence {
  method: string;
  alpha: number;
  /** Observations behind the verdict per version (requests, units, labels, pairs). */
  nCandidate: number;
  nChampion: number | null;
  /** The statistic compared with the threshold, e.g. `log e-value` or `upper bound`. */
  statistic: string;
  value: number | null;
  threshold: number | null;
  /** When Inconclusive: rough further candidate observations to a decision at the current rates. */
  expectedMoreSamples: number | null;
  /** Expected and observed counts (the sample-ratio check). */
  expected?: number;
  observed?: number;
}

/** An assessment's verdict with the evidence a human needs to trust it. */
export interface Assessment {
  /** What was assessed, e.g. `guardrail error_rate` or `gate auc`. */
  subject: string;
  verdict: Verdict;
  evidence: string;
  candidate?: number | null;
  champion?: number | null;
  samples?: number;
  test?: TestEvidence;
  /** The slice assessed (`country=DE`); absent for the overall assessment. */
  slice?: string;
}

/**
 * Raw counts of one version over a window: requests, errors, assignment units and the latency
 * histogram. Every live guardrail and the sample-ratio check are computed from these, so a
 * verdict can be recomputed from the window at any time (after a restart or continue-as-new).
 */
export interface WindowCounts {
  requests: number;
  /** Requests answered with HTTP status >= 400 (or not answered). */
  errors: number;
  /**
   * Assignment units: distinct entity keys plus requests without one. Sticky routing assigns
   * entities, not requests, so the sample-ratio check counts these.
   */
  units: number;
  latency: {
    /** Upper bounds of the buckets, ms; `counts` has one more entry (the open last bucket). */
    boundsMs: readonly number[];
    counts: number[];
    /** The largest latency in the window, ms (null when empty). */
    maxMs: number | null;
  };
}

/** The worst verdict of several: Fail > Error > NoData > Inconclusive > Pass (Pass only if all pass). */
export function combineVerdicts(verdicts: readonly Verdict[]): Verdict {
  for (const v of ['Fail', 'Error', 'NoData', 'Inconclusive'] as const) if (verdicts.includes(v)) return v;
  return 'Pass';
}

/** A fixed, short rendering of a metric value for evidence strings. */
export function fmt(value: number | null | undefined): string {
  if (value === null || value === undefined) return 'none';
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(1) : Number(value.toPrecision(4)).toString();
}
