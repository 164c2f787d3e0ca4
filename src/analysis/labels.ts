/**
 * Delayed labels: candidate and champion quality on matured predictions, compared with an
 * always-valid interval for the difference (sequential/difference.ts). Pure.
 */
import type { Watch } from '../plan/schema';
import { LABEL_METRICS } from './metrics';
import { aucWithVariance, testRegression } from './sequential';
import { accuracy, auc, logLoss, quantile } from './stats';
import { fmt, type Assessment, type Measurement } from './types';

/** A prediction whose label has arrived: when it was made and when its label came. */
export interface LabelledPrediction {
  score: number;
  label: number;
  atMs: number;
  labelAtMs: number;
}

/** One quality estimate with the variance of the estimate (null when it cannot be computed). */
export interface Estimate {
  value: number | null;
  variance: number | null;
}

/** Quality of one version on its matured, labelled predictions. Small: it is an activity's result. */
export interface LabelSummary {
  version: string;
  rows: number;
  positives: number;
  negatives: number;
  auc: Estimate;
  log_loss: Estimate;
  accuracy: Estimate;
}

export interface LabelComparison {
  phase: 'Ok' | 'Error';
  error?: string;
  /** Predictions made up to this time count (older than the maturity delay); null without labels. */
  maturedBeforeMs: number | null;
  /** The observed label delay the maturity comes from (its `maturity` quantile), ms. */
  delayMs: number | null;
  candidate: LabelSummary;
  champion: LabelSummary;
  /** The same comparison on the predictions of each slice (a plan's slices; see ./slices.ts). */
  slices?: { name: string; value: string; comparison: LabelComparison }[];
}

const EPS = 1e-15;

function meanAndVariance(values: readonly number[]): Estimate {
  const n = values.length;
  if (n === 0) return { value: null, variance: null };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { value: mean, variance: null };
  const s2 = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1);
  return { value: mean, variance: s2 / n };
}

/** AUC (DeLong variance), log loss and accuracy at 0.5 (sample variances of their means). */
export function summarizeLabels(
  version: string,
  rows: readonly { score: number; label: number }[],
): LabelSummary {
  const scores = rows.map((r) => r.score);
  const labels = rows.map((r) => r.label);
  const a = rows.length > 0 ? aucWithVariance(scores, labels) : null;
  const losses = rows.map((r) => {
    const p = Math.min(1 - EPS, Math.max(EPS, r.score));
    return -(r.label * Math.log(p) + (1 - r.label) * Math.log(1 - p));
  });
  const hits = rows.map((r) => ((r.score >= 0.5 ? 1 : 0) === r.label ? 1 : 0));
  const positives = labels.filter((l) => l === 1).length;
  return {
    version,
    rows: rows.length,
    positives,
    negatives: rows.length - positives,
    auc: a ? { value: a.auc, variance: a.variance } : { value: null, variance: null },
    log_loss: meanAndVariance(losses),
    accuracy: meanAndVariance(hits),
  };
}

/**
 * Keeps the matured predictions of both versions: made at least the observed label delay (its
 * `maturity` quantile over the labels that arrived) before `toMs`. Recent predictions have only
 * their fastest labels, which are not a fair sample of all labels.
 */
export function compareLabels(
  candidate: { version: string; rows: readonly LabelledPrediction[] },
  champion: { version: string; rows: readonly LabelledPrediction[] },
  toMs: number,
  maturity: number,
): LabelComparison {
  const delays = [...candidate.rows, ...champion.rows].map((r) => Math.max(0, r.labelAtMs - r.atMs));
  const delayMs = delays.length > 0 ? quantile(delays, maturity) : null;
  const cutoff = delayMs === null ? null : toMs - delayMs;
  const matured = (rows: readonly LabelledPrediction[]) =>
    cutoff === null ? [] : rows.filter((r) => r.atMs <= cutoff && r.labelAtMs <= toMs);
  return {
    phase: 'Ok',
    maturedBeforeMs: cutoff,
    delayMs,
    candidate: summarizeLabels(candidate.version, matured(candidate.rows)),
    champion: summarizeLabels(champion.version, matured(champion.rows)),
  };
}

/**
 * The label check of the watch: the difference candidate - champion of the metric (oriented so
 * that higher is better) with its always-valid interval. Fail when a regression beyond
 * maxRegression is significant; Pass when it is excluded; Inconclusive between, and below
 * minLabels per version (the interval relies on the estimates being near normal).
 */
export function assessLabels(rule: NonNullable<Watch['labels']>, c: LabelComparison): Assessment {
  const subject = `labels ${rule.metric}`;
  if (c.phase === 'Error')
    return { subject, verdict: 'Error', evidence: `measuring failed: ${c.error ?? ''}` };
  const cand = c.candidate;
  const champ = c.champion;
  const base = {
    subject,
    candidate: cand[rule.metric].value,
    champion: champ[rule.metric].value,
    samples: cand.rows,
  };
  const method = `normal-mixture confidence sequence for the ${rule.metric} difference (tau ${fmt(rule.tau)})`;
  const matured =
    c.maturedBeforeMs === null
      ? 'no labels yet'
      : `predictions made before ${new Date(c.maturedBeforeMs).toISOString()} (label delay p${Math.round(rule.maturity * 100)} ${fmt((c.delayMs ?? 0) / 1000)}s)`;
  const evidenceBase = {
    method,
    alpha: rule.alpha,
    nCandidate: cand.rows,
    nChampion: champ.rows,
    statistic: 'interval of candidate - champion (higher is better)',
    value: null,
    threshold: -rule.maxRegression,
    expectedMoreSamples: null,
  };
  if (cand.rows === 0) return { ...base, verdict: 'NoData', evidence: `no matured labels yet (${matured})` };
  if (cand.rows < rule.minLabels || champ.rows < rule.minLabels) {
    return {
      ...base,
      verdict: 'Inconclusive',
      evidence: `${cand.rows} candidate and ${champ.rows} champion labels on ${matured}; ${rule.minLabels} each required`,
      test: { ...evidenceBase, expectedMoreSamples: Math.max(0, rule.minLabels - cand.rows) },
    };
  }
  const ec = cand[rule.metric];
  const eb = champ[rule.metric];
  if (ec.value === null || eb.value === null || ec.variance === null || eb.variance === null) {
    return {
      ...base,
      verdict: 'Inconclusive',
      evidence: `${rule.metric} cannot be estimated yet (both classes are needed) on ${matured}`,
      test: evidenceBase,
    };
  }
  const higher = LABEL_METRICS[rule.metric].better === 'higher';
  const difference = higher ? ec.value - eb.value : eb.value - ec.value;
  const t = testRegression(difference, ec.variance + eb.variance, rule.maxRegression, rule.alpha, rule.tau);
  const facts = `${rule.metric} ${fmt(ec.value)} (${cand.rows} labels) vs champion ${fmt(eb.value)} (${champ.rows}) on ${matured}; difference ${fmt(difference)} within [${fmt(t.interval.lower)}, ${fmt(t.interval.upper)}] (higher is better)`;
  const verdicts = {
    Fail: `regression beyond ${fmt(rule.maxRegression)} is significant`,
    Pass: `a regression beyond ${fmt(rule.maxRegression)} is excluded`,
    Inconclusive: `a regression of ${fmt(rule.maxRegression)} is neither shown nor excluded`,
  };
  return {
    ...base,
    verdict: t.verdict,
    evidence: `${facts}: ${verdicts[t.verdict]}`,
    test: {
      ...evidenceBase,
      statistic: t.verdict === 'Fail' ? 'upper bound of the difference' : 'lower bound of the difference',
      value: t.verdict === 'Fail' ? t.interval.upper : t.interval.lower,
    },
  };
}

/** A quality metric (auc, log_loss, accuracy at 0.5) over labelled scores, as a measurement (offline gates). */
export function labelMeasurement(
  rows: readonly { score: number; label: number }[],
  q: { metric: string; version: string; fromMs?: number; toMs?: number },
): Measurement {
  const base = {
    metric: q.metric,
    version: q.version,
    samples: rows.length,
    phase: 'Ok' as const,
    fromMs: q.fromMs,
    toMs: q.toMs,
  };
  if (rows.length === 0) return { ...base, value: null };
  const scores = rows.map((r) => r.score);
  const labels = rows.map((r) => r.label);
  const value =
    q.metric === 'auc'
      ? auc(scores, labels)
      : q.metric === 'log_loss'
        ? logLoss(scores, labels)
        : accuracy(scores, labels);
  return { ...base, value: Number.isNaN(value) ? null : value };
}
