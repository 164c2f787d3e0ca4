/**
 * Mixture likelihood ratios: the common core of promote's always-valid tests. Pure.
 *
 * Method of mixtures (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform,
 * nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021; Johari, Koomen, Pekelis &
 * Walsh, "Always valid inference", Oper. Res. 2022): for every alternative θ in a one-parameter
 * family whose likelihood ratio against the null boundary θ0 is monotone, the likelihood ratio
 * process is a nonnegative supermartingale under every null θ on the other side of θ0; so is any
 * average of them over a mixing distribution fixed in advance (here a discrete one, a grid of
 * alternatives with weights). By Ville's inequality such an e-process crosses 1/α with probability at
 * most α, however often it is looked at: rejecting when it does is valid at every look.
 */

/** A discrete mixing distribution: alternatives (in the test's own parameter) and log weights. */
export interface Mixture {
  readonly points: readonly number[];
  /** Natural log of each point's weight; the weights sum to 1. */
  readonly logWeights: readonly number[];
}

/** log(Σ exp(xs)), stable for large and -Infinity terms. */
export function logSumExp(xs: readonly number[]): number {
  let max = -Infinity;
  for (const x of xs) if (x > max) max = x;
  if (max === -Infinity || !Number.isFinite(max)) return max;
  let sum = 0;
  for (const x of xs) sum += Math.exp(x - max);
  return max + Math.log(sum);
}

/** The mixture's log e-value, given each alternative's log likelihood ratio. */
export function logMixture(mixture: Mixture, logRatios: readonly number[]): number {
  return logSumExp(logRatios.map((l, i) => l + mixture.logWeights[i]!));
}

/**
 * A mixture over multiplicative effects: `effects` are factors > 1 (e.g. 1.5 = 50% more); the
 * points are `log(factor)` on the side asked for (`up`: +log, `down`: -log, `both`: each with half
 * its weight). `weights` default to equal.
 */
export function effectMixture(
  effects: readonly number[],
  side: 'up' | 'down' | 'both',
  weights?: readonly number[],
): Mixture {
  if (effects.length === 0) throw new Error('a mixture needs at least one effect');
  if (effects.some((e) => !(e > 1) || !Number.isFinite(e)))
    throw new Error('mixture effects must be finite factors > 1');
  if (weights && weights.length !== effects.length) throw new Error('one weight per effect');
  const w = weights ?? effects.map(() => 1);
  const total = w.reduce((a, b) => a + b, 0);
  const points: number[] = [];
  const logWeights: number[] = [];
  for (const [i, e] of effects.entries()) {
    const lw = Math.log(w[i]! / total);
    if (side !== 'down') {
      points.push(Math.log(e));
      logWeights.push(side === 'both' ? lw - Math.LN2 : lw);
    }
    if (side !== 'up') {
      points.push(-Math.log(e));
      logWeights.push(side === 'both' ? lw - Math.LN2 : lw);
    }
  }
  return { points, logWeights };
}

/** KL divergence between Bernoulli(p) and Bernoulli(q), in nats (0 log 0 = 0). */
export function bernoulliKl(p: number, q: number): number {
  const term = (a: number, b: number) => (a === 0 ? 0 : a * Math.log(a / b));
  return term(p, q) + term(1 - p, 1 - q);
}

export const logistic = (x: number): number => 1 / (1 + Math.exp(-x));
export const logit = (p: number): number => Math.log(p / (1 - p));
