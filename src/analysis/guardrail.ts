/**
 * Live guardrails and the sample-ratio check: the counts of every traffic split since the first
 * shift become verdicts from always-valid tests (src/analysis/sequential), so a verdict's error
 * rate holds over every look of every bake and of the watch. Pure: no I/O, no Temporal.
 * docs/decisions.md describes the methods and their assumptions.
 */
import type { Guardrail } from '../plan/schema';
import {
  LATENCY_EDGES_MS,
  testQuantileLimit,
  testQuantileRatio,
  testRateLimit,
  testRateRatio,
  testSampleRatio,
  type LatencyHistogram,
  type QuantileBounds,
  type SequentialVerdict,
} from './sequential';
import { fmt, type Assessment, type TestEvidence, type Verdict } from './types';

/** Requests, errors and assignment units of one version in one split. */
export interface UnitCounts {
  requests: number;
  errors: number;
  units: number;
}

/** A latency histogram over LATENCY_EDGES_MS as [bucket, count] pairs (bucket = edges.length: above). */
export interface SparseHistogram {
  bins: [number, number][];
  maxMs: number | null;
}

/** One period with one traffic split: the candidate's percent and both versions' counts. */
export interface SplitCounts {
  percent: number;
  candidate: UnitCounts;
  champion: UnitCounts;
}

/** Everything the live checks need, measured over all splits since the first shift. */
export interface LiveCounts {
  phase: 'Ok' | 'Error';
  error?: string;
  splits: SplitCounts[];
  /** Latency of each version over all splits. */
  latency: { candidate: SparseHistogram; champion: SparseHistogram };
  /** The same counts for the requests of each slice (a plan's slices; see ./slices.ts). */
  slices?: SliceCounts[];
}

/** One slice's live counts: `name` is the plan's slice, `value` the requests' value. */
export interface SliceCounts {
  name: string;
  value: string;
  splits: SplitCounts[];
  latency: { candidate: SparseHistogram; champion: SparseHistogram };
  /** Set when this slice could not be measured (its checks are Error; the others stand). */
  error?: string;
}

/** A sparse histogram as the dense one the quantile bounds read. */
export function denseHistogram(h: SparseHistogram): LatencyHistogram {
  const counts = new Array<number>(LATENCY_EDGES_MS.length).fill(0);
  let overflow = 0;
  for (const [bucket, n] of h.bins) {
    if (bucket >= LATENCY_EDGES_MS.length) overflow += n;
    else counts[bucket]! += n;
  }
  return { edges: LATENCY_EDGES_MS, counts, overflow };
}

/** Merges dense bucket counts (one per LATENCY_EDGES_MS edge plus the open bucket) into a sparse histogram. */
export function addToSparse(into: SparseHistogram, counts: readonly number[], maxMs: number | null): void {
  const map = new Map(into.bins);
  counts.forEach((n, bucket) => {
    if (n > 0) map.set(bucket, (map.get(bucket) ?? 0) + n);
  });
  into.bins = [...map.entries()].sort((a, b) => a[0] - b[0]);
  if (maxMs !== null && (into.maxMs === null || maxMs > into.maxMs)) into.maxMs = maxMs;
}

const total = (splits: readonly SplitCounts[], who: 'candidate' | 'champion', what: keyof UnitCounts) =>
  splits.reduce((n, s) => n + s[who][what], 0);

/** A sub-test's outcome, for combining a rule's limit and relative tests. */
interface Part {
  kind: 'limit' | 'relative';
  verdict: SequentialVerdict;
  text: string;
  test: TestEvidence;
}

/**
 * Fail when any comparison fails. Pass when every limit passes and, if the rule has no limit, the
 * comparison with the champion passes: with a limit, being significantly within it is enough to
 * pass a bake while the champion comparison keeps running (it can still Fail at any later look).
 * Proving a rate within 1.5x of the champion's takes many errors, which a good candidate never makes.
 */
function combine(parts: readonly Part[]): SequentialVerdict {
  if (parts.some((p) => p.verdict === 'Fail')) return 'Fail';
  return deciding(parts).every((p) => p.verdict === 'Pass') ? 'Pass' : 'Inconclusive';
}

/** The comparisons a Pass needs: the limits, or without limits the champion comparison. */
function deciding(parts: readonly Part[]): Part[] {
  const limits = parts.filter((p) => p.kind === 'limit');
  return limits.length > 0 ? limits : [...parts];
}

const WORDS: Record<SequentialVerdict, string> = {
  Fail: 'significantly worse',
  Pass: 'significantly within',
  Inconclusive: 'not yet decided',
};

/**
 * Assesses one guardrail over the live counts. Each of the rule's comparisons (max, min, relative
 * to the champion) is an always-valid test at alpha divided by their number (Bonferroni), so the
 * rule's false Fail rate is at most alpha however often it is checked. Fail as soon as any
 * comparison fails; Pass when the limits pass (or, without limits, the champion comparison does)
 * and the candidate has minSamples requests.
 */
export function assessGuardrail(rule: Guardrail, live: LiveCounts): Assessment {
  const subject = `guardrail ${rule.metric}`;
  if (live.phase === 'Error')
    return { subject, verdict: 'Error', evidence: `measuring failed: ${live.error ?? 'unknown error'}` };
  const n = total(live.splits, 'candidate', 'requests');
  const nChampion = total(live.splits, 'champion', 'requests');
  if (n === 0)
    return { subject, verdict: 'NoData', evidence: `no requests served by the candidate yet`, samples: 0 };
  const comparisons = [rule.max, rule.min, rule.relativeIncrease].filter((x) => x !== undefined).length;
  const alpha = rule.alpha / Math.max(1, comparisons);
  const parts =
    rule.metric === 'error_rate' ? errorParts(rule, live, alpha) : latencyParts(rule, live, alpha);
  let verdict: Verdict = combine(parts);
  const first =
    deciding(parts).find((p) => p.verdict === verdict) ??
    parts.find((p) => p.verdict === verdict) ??
    parts[0]!;
  let note = '';
  if (verdict === 'Pass' && n < rule.minSamples) {
    verdict = 'Inconclusive';
    note = `; only ${n} of ${rule.minSamples} required requests`;
  }
  const more = deciding(parts)
    .filter((p) => p.verdict === 'Inconclusive')
    .map((p) => p.test.expectedMoreSamples);
  const expectedMoreSamples =
    verdict !== 'Inconclusive'
      ? null
      : more.length === 0
        ? Math.max(0, rule.minSamples - n)
        : more.some((m) => m === null)
          ? null
          : Math.max(...(more as number[]));
  return {
    subject,
    verdict,
    evidence: parts.map((p) => p.text).join('; ') + note,
    candidate: value(rule.metric, live, 'candidate'),
    champion: value(rule.metric, live, 'champion'),
    samples: n,
    test: { ...first.test, nCandidate: n, nChampion, expectedMoreSamples },
  };
}

/** The rule's metric over all splits, for display (error rate or the histogram's quantile). */
function value(metric: string, live: LiveCounts, who: 'candidate' | 'champion'): number | null {
  if (metric === 'error_rate') {
    const requests = total(live.splits, who, 'requests');
    return requests === 0 ? null : total(live.splits, who, 'errors') / requests;
  }
  const q = quantileOf(metric);
  const h = denseHistogram(live.latency[who]);
  const n = h.counts.reduce((a, b) => a + b, h.overflow);
  if (n === 0) return null;
  let seen = 0;
  for (let k = 0; k < h.counts.length; k++) {
    seen += h.counts[k]!;
    if (seen >= q * n) return h.edges[k]!;
  }
  return live.latency[who].maxMs;
}

function errorParts(rule: Guardrail, live: LiveCounts, alpha: number): Part[] {
  const n = total(live.splits, 'candidate', 'requests');
  const errors = total(live.splits, 'candidate', 'errors');
  const rate = `error_rate ${fmt(errors / n)} (${errors}/${n})`;
  const parts: Part[] = [];
  const limit = (bound: number, side: 'max' | 'min') => {
    const t = testRateLimit(errors, n, bound, alpha);
    // For a minimum the roles swap: significantly below it fails.
    const verdict: SequentialVerdict =
      side === 'max' ? t.verdict : t.verdict === 'Fail' ? 'Pass' : t.verdict === 'Pass' ? 'Fail' : t.verdict;
    const evidence = side === 'max' ? t.logEvidenceAbove : t.logEvidenceBelow;
    const against = side === 'max' ? t.logEvidenceBelow : t.logEvidenceAbove;
    parts.push({
      kind: 'limit',
      verdict,
      text: `${rate} vs ${side} ${fmt(bound)}: ${WORDS[verdict]} (log e-values ${fmt(evidence)} worse, ${fmt(against)} within; decide at ${fmt(t.logThreshold)})`,
      test: {
        method: `mixture SPRT for a binomial rate vs ${side} ${fmt(bound)}`,
        alpha,
        nCandidate: n,
        nChampion: null,
        statistic: verdict === 'Pass' ? 'log e-value (within)' : 'log e-value (worse)',
        value: verdict === 'Pass' ? against : evidence,
        threshold: t.logThreshold,
        expectedMoreSamples: t.expectedMoreSamples,
      },
    });
  };
  if (rule.max !== undefined) limit(rule.max, 'max');
  if (rule.min !== undefined) limit(rule.min, 'min');
  if (rule.relativeIncrease !== undefined) {
    const t = testRateRatio(
      live.splits.map((s) => ({
        candidateRequests: s.candidate.requests,
        candidateEvents: s.candidate.errors,
        championRequests: s.champion.requests,
        championEvents: s.champion.errors,
      })),
      rule.relativeIncrease,
      alpha,
    );
    parts.push({
      kind: 'relative',
      verdict: t.verdict,
      text: `${rate} vs champion ${fmt(t.championRate)} (${total(live.splits, 'champion', 'errors')}/${t.championRequests}), limit x${fmt(t.boundary)}: ${WORDS[t.verdict]} (log e-values ${fmt(t.logEvidenceAbove)} worse, ${fmt(t.logEvidenceBelow)} within; decide at ${fmt(t.logThreshold)})`,
      test: {
        method: `conditional mixture SPRT for the error-rate ratio vs x${fmt(t.boundary)}`,
        alpha,
        nCandidate: n,
        nChampion: t.championRequests,
        statistic: t.verdict === 'Pass' ? 'log e-value (within)' : 'log e-value (worse)',
        value: t.verdict === 'Pass' ? t.logEvidenceBelow : t.logEvidenceAbove,
        threshold: t.logThreshold,
        expectedMoreSamples: t.expectedMoreSamples,
      },
    });
  }
  return parts;
}

function quantileOf(metric: string): number {
  const match = /^latency_p(\d{1,2})_ms$/.exec(metric);
  return match ? Number(match[1]) / 100 : 0.99;
}

const boundsText = (b: QuantileBounds) => `[${fmt(b.lower)}, ${b.upper === null ? 'open' : fmt(b.upper)}] ms`;

function latencyParts(rule: Guardrail, live: LiveCounts, alpha: number): Part[] {
  const q = quantileOf(rule.metric);
  const name = `p${Math.round(q * 100)}`;
  const candidate = denseHistogram(live.latency.candidate);
  const champion = denseHistogram(live.latency.champion);
  const parts: Part[] = [];
  const limit = (bound: number, side: 'max' | 'min') => {
    const t = testQuantileLimit(candidate, q, bound, alpha);
    const verdict: SequentialVerdict =
      side === 'max'
        ? t.verdict
        : t.candidate.upper !== null && t.candidate.upper < bound
          ? 'Fail'
          : t.candidate.lower >= bound
            ? 'Pass'
            : 'Inconclusive';
    parts.push({
      kind: 'limit',
      verdict,
      text: `${name} within ${boundsText(t.candidate)} (n=${t.candidate.n}) vs ${side} ${fmt(bound)} ms: ${WORDS[verdict]}`,
      test: {
        method: `confidence sequence for the ${name} latency vs ${side} ${fmt(bound)} ms`,
        alpha,
        nCandidate: t.candidate.n,
        nChampion: null,
        statistic: side === 'max' && verdict !== 'Pass' ? 'lower bound (ms)' : 'upper bound (ms)',
        value: side === 'max' && verdict !== 'Pass' ? t.candidate.lower : t.candidate.upper,
        threshold: bound,
        expectedMoreSamples: null,
      },
    });
  };
  if (rule.max !== undefined) limit(rule.max, 'max');
  if (rule.min !== undefined) limit(rule.min, 'min');
  if (rule.relativeIncrease !== undefined) {
    const t = testQuantileRatio(candidate, champion, q, rule.relativeIncrease, alpha);
    const f = 1 + rule.relativeIncrease;
    parts.push({
      kind: 'relative',
      verdict: t.verdict,
      text: `${name} within ${boundsText(t.candidate)} vs champion ${boundsText(t.champion!)} (n=${t.candidate.n}/${t.champion!.n}), limit x${fmt(f)}: ${WORDS[t.verdict]}`,
      test: {
        method: `confidence sequences for the ${name} latency of both versions, limit x${fmt(f)}`,
        alpha,
        nCandidate: t.candidate.n,
        nChampion: t.champion!.n,
        statistic: t.verdict === 'Pass' ? 'candidate upper bound (ms)' : 'candidate lower bound (ms)',
        value: t.verdict === 'Pass' ? t.candidate.upper : t.candidate.lower,
        threshold:
          t.verdict === 'Pass'
            ? f * t.champion!.lower
            : t.champion!.upper === null
              ? null
              : f * t.champion!.upper,
        expectedMoreSamples: null,
      },
    });
  }
  return parts;
}

/**
 * The sample-ratio check: the assignment units each version received in every split against the
 * route's weights. Fail when they do not match (every other verdict is then untrusted); otherwise
 * Pass, meaning no mismatch is detected (a match can never be proven).
 */
export function assessSampleRatio(live: LiveCounts, alpha: number): Assessment {
  const subject = 'sample ratio';
  if (live.phase === 'Error')
    return { subject, verdict: 'Error', evidence: `measuring failed: ${live.error ?? 'unknown error'}` };
  const segments = live.splits
    .filter((s) => s.percent > 0 && s.percent < 100)
    .map((s) => ({
      expectedShare: s.percent / 100,
      candidateRequests: s.candidate.units,
      championRequests: s.champion.units,
    }));
  const t = testSampleRatio(segments, alpha);
  const expected = Math.round(t.expectedCandidate);
  const text = `candidate received ${t.observedCandidate} of ${t.total} assignment units, ${expected} expected from the weights`;
  const verdict: Verdict = t.verdict === 'Fail' ? 'Fail' : 'Pass';
  return {
    subject,
    verdict,
    evidence:
      verdict === 'Fail'
        ? `${text}: traffic does not match the route (log e-value ${fmt(t.logEvidence)} >= ${fmt(t.logThreshold)})`
        : `${text}: no mismatch detected (log e-value ${fmt(t.logEvidence)} < ${fmt(t.logThreshold)})`,
    samples: t.total,
    test: {
      method: 'mixture SPRT for the split of assignment units against the weights',
      alpha,
      nCandidate: t.observedCandidate,
      nChampion: t.total - t.observedCandidate,
      statistic: 'log e-value',
      value: t.logEvidence,
      threshold: t.logThreshold,
      expectedMoreSamples: null,
      expected,
      observed: t.observedCandidate,
    },
  };
}
