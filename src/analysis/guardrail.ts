/**
 * Guardrail assessment: a live measurement of the candidate (and the champion, for relative rules)
 * becomes a verdict with evidence. Pure: no I/O, no Temporal.
 */
import type { Guardrail } from '../plan/schema';
import { rateExceedsPValue } from './stats';
import { fmt, type Assessment, type Measurement } from './types';

/** Assesses one guardrail rule. `champion` is required only by `relativeIncrease`. */
export function assessGuardrail(rule: Guardrail, candidate: Measurement, champion?: Measurement): Assessment {
  const subject = `guardrail ${rule.metric}`;
  const base = {
    subject,
    candidate: candidate.value,
    champion: champion?.value ?? null,
    samples: candidate.samples,
  };
  if (candidate.phase === 'Error') {
    return {
      ...base,
      verdict: 'Error',
      evidence: `measuring the candidate failed: ${candidate.error ?? 'unknown error'}`,
    };
  }
  if (candidate.samples === 0 || candidate.value === null) {
    return {
      ...base,
      verdict: 'NoData',
      evidence: `no ${rule.metric} observations for the candidate in the window`,
    };
  }
  const value = candidate.value;
  const enough = candidate.samples >= rule.minSamples;
  const breach =
    rule.max !== undefined && value > rule.max
      ? `${rule.metric} ${fmt(value)} > max ${fmt(rule.max)}`
      : rule.min !== undefined && value < rule.min
        ? `${rule.metric} ${fmt(value)} < min ${fmt(rule.min)}`
        : null;
  if (breach) {
    // Below minSamples a breach is noise-prone (1 error in 3 requests): Inconclusive, not Fail.
    return enough
      ? { ...base, verdict: 'Fail', evidence: `${breach} (n=${candidate.samples})` }
      : {
          ...base,
          verdict: 'Inconclusive',
          evidence: `${breach} but only ${candidate.samples} of ${rule.minSamples} required samples`,
        };
  }
  const absolute = [
    rule.max !== undefined ? `<= max ${fmt(rule.max)}` : '',
    rule.min !== undefined ? `>= min ${fmt(rule.min)}` : '',
  ]
    .filter(Boolean)
    .join(', ');
  if (rule.relativeIncrease === undefined) {
    return enough
      ? {
          ...base,
          verdict: 'Pass',
          evidence: `${rule.metric} ${fmt(value)} ${absolute} (n=${candidate.samples})`,
        }
      : {
          ...base,
          verdict: 'Inconclusive',
          evidence: `${rule.metric} ${fmt(value)} from only ${candidate.samples} of ${rule.minSamples} required samples`,
        };
  }
  return assessRelative(rule, rule.relativeIncrease, { ...candidate, value }, champion, base, enough);
}

function assessRelative(
  rule: Guardrail,
  relativeIncrease: number,
  candidate: Measurement & { value: number },
  champion: Measurement | undefined,
  base: Omit<Assessment, 'verdict' | 'evidence'>,
  enough: boolean,
): Assessment {
  const factor = 1 + relativeIncrease;
  if (
    !champion ||
    champion.phase === 'Error' ||
    champion.value === null ||
    champion.samples < rule.minSamples
  ) {
    const why =
      !champion || champion.phase !== 'Error'
        ? `only ${champion?.samples ?? 0} champion samples`
        : champion.error;
    return { ...base, verdict: 'Inconclusive', evidence: `no champion baseline for ${rule.metric} (${why})` };
  }
  if (!enough) {
    return {
      ...base,
      verdict: 'Inconclusive',
      evidence: `${rule.metric} from only ${candidate.samples} of ${rule.minSamples} required samples`,
    };
  }
  const limit = champion.value * factor;
  const head = `${rule.metric} ${fmt(candidate.value)} vs champion ${fmt(champion.value)} (limit x${fmt(factor)} = ${fmt(limit)})`;
  if (candidate.value <= limit) return { ...base, verdict: 'Pass', evidence: `${head}: within` };
  if (candidate.events !== undefined && champion.events !== undefined) {
    // Rates: a one-sided test so that noise on small counts does not roll back a good candidate.
    const p = rateExceedsPValue(
      candidate.events,
      candidate.samples,
      champion.events,
      champion.samples,
      factor,
    );
    if (p < rule.alpha)
      return {
        ...base,
        verdict: 'Fail',
        evidence: `${head}: exceeded, p=${fmt(p)} < alpha ${fmt(rule.alpha)}`,
      };
    return {
      ...base,
      verdict: 'Inconclusive',
      evidence: `${head}: above the limit but not significant, p=${fmt(p)}`,
    };
  }
  return { ...base, verdict: 'Fail', evidence: `${head}: exceeded` };
}
