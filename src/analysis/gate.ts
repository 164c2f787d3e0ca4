/** Offline validation gate assessment. Pure. */
import type { Gate } from '../plan/schema';
import { GATE_METRICS } from './metrics';
import { fmt, type Assessment, type Measurement } from './types';

/**
 * Assesses one gate. Metric gates compare the candidate with `min`/`max` and, when
 * `maxRegressionVsChampion` is set, with the champion in the metric's better direction.
 * Check gates (e.g. feature_schema) pass when the measured value is 1.
 */
export function assessGate(gate: Gate, candidate: Measurement, champion?: Measurement): Assessment {
  const name = gate.metric ?? gate.check ?? 'gate';
  const subject = `gate ${name}`;
  const base = {
    subject,
    candidate: candidate.value,
    champion: champion?.value ?? null,
    samples: candidate.samples,
  };
  const detail = candidate.detail ? `: ${candidate.detail}` : '';
  if (candidate.phase === 'Error')
    return { ...base, verdict: 'Error', evidence: `measuring failed: ${candidate.error ?? ''}` };
  if (candidate.value === null)
    return { ...base, verdict: 'NoData', evidence: `no value for ${name}${detail}` };
  if (gate.check !== undefined) {
    return candidate.value === 1
      ? { ...base, verdict: 'Pass', evidence: `${name} compatible${detail}` }
      : { ...base, verdict: 'Fail', evidence: `${name} incompatible${detail}` };
  }
  const value = candidate.value;
  if (gate.min !== undefined && value < gate.min) {
    return { ...base, verdict: 'Fail', evidence: `${name} ${fmt(value)} < min ${fmt(gate.min)}` };
  }
  if (gate.max !== undefined && value > gate.max) {
    return { ...base, verdict: 'Fail', evidence: `${name} ${fmt(value)} > max ${fmt(gate.max)}` };
  }
  if (gate.maxRegressionVsChampion !== undefined) {
    if (!champion || champion.phase === 'Error' || champion.value === null) {
      return { ...base, verdict: 'NoData', evidence: `no champion ${name} to compare with` };
    }
    const better = gate.metric ? GATE_METRICS[gate.metric].better : 'higher';
    const regression = better === 'higher' ? champion.value - value : value - champion.value;
    // A small tolerance: a regression exactly at the limit passes despite floating-point subtraction.
    if (regression > gate.maxRegressionVsChampion + 1e-9) {
      return {
        ...base,
        verdict: 'Fail',
        evidence: `${name} ${fmt(value)} regresses ${fmt(regression)} vs champion ${fmt(champion.value)} (max ${fmt(gate.maxRegressionVsChampion)})`,
      };
    }
  }
  const vs =
    champion?.value !== undefined && champion.value !== null ? ` (champion ${fmt(champion.value)})` : '';
  return { ...base, verdict: 'Pass', evidence: `${name} ${fmt(value)}${vs} within limits` };
}
