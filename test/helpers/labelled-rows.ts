/** Labelled predictions for the label-check tests, drawn from the project's seeded generator. */
import type { LabelledPrediction } from '../../src/analysis/labels';
import { gaussian, seededRandom } from '../../src/providers/inprocess/random';

/**
 * `n` predictions 10 ms apart from `fromMs`, prevalence 0.3, whose scores separate the classes
 * with strength `signal`; each label arrives `delayMs` after its prediction.
 */
export function labelledRows(
  n: number,
  signal: number,
  seed: number | string,
  delayMs = 1000,
  fromMs = 0,
): LabelledPrediction[] {
  const rand = seededRandom(`rows-${seed}`);
  return Array.from({ length: n }, (_, i) => {
    const label = rand() < 0.3 ? 1 : 0;
    const z = gaussian(rand);
    const score = 1 / (1 + Math.exp(-(signal * (label - 0.3) + z)));
    return { score, label, atMs: fromMs + i * 10, labelAtMs: fromMs + i * 10 + delayMs };
  });
}
