/** Weighted sticky routing. Pure: the same key and weights always give the same version. */
import { InvalidInputError } from '../../common/errors';

/** FNV-1a 32-bit hash. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Weights in version order, computed once per weights object (a route's weights are replaced, never edited). */
const layouts = new WeakMap<object, Array<[string, number]>>();
function layout(weights: Readonly<Record<string, number>>): Array<[string, number]> {
  let sorted = layouts.get(weights);
  if (!sorted) {
    sorted = Object.entries(weights).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    layouts.set(weights, sorted);
  }
  return sorted;
}

/**
 * The version a key is assigned to: the key's hash picks a point in [0, 10000) and the weights
 * are laid out in version order. While the weights are unchanged a key always lands on the same
 * version; raising a version's weight moves only the keys in the added band.
 */
export function pickVersion(weights: Readonly<Record<string, number>>, key: string): string | undefined {
  const point = (hash32(key) % 10_000) / 100;
  let acc = 0;
  let last: string | undefined;
  for (const [version, weight] of layout(weights)) {
    if (weight <= 0) continue;
    acc += weight;
    last = version;
    if (point < acc) return version;
  }
  return last;
}

const VERSION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/**
 * Throws InvalidInputError unless the weights are whole percents summing to 100 over valid version
 * names. Returns the versions with traffic as a null-prototype record (safe to index by any name).
 */
export function checkWeights(model: string, weights: unknown): Record<string, number> {
  if (!weights || typeof weights !== 'object' || Array.isArray(weights))
    throw new InvalidInputError(`weights for ${model} must be an object {version: percent}`);
  const entries = Object.entries(weights);
  if (entries.length === 0) throw new InvalidInputError(`weights for ${model} are empty`);
  if (entries.length > 100) throw new InvalidInputError(`weights for ${model}: at most 100 versions`);
  for (const [version, w] of entries) {
    if (!VERSION.test(version))
      throw new InvalidInputError(
        `weights for ${model}: ${JSON.stringify(version.slice(0, 60))} is not a version name (letters, digits, '.', '_', '-', at most 100)`,
      );
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > 100) {
      throw new InvalidInputError(
        `weight of ${model}/${version} must be a whole percent 0..100, got ${JSON.stringify(w) ?? 'nothing'}`,
      );
    }
  }
  const total = entries.reduce((sum, [, w]) => sum + (w as number), 0);
  if (total !== 100) throw new InvalidInputError(`weights for ${model} sum to ${total}, not 100`);
  const out = Object.create(null) as Record<string, number>;
  for (const [version, w] of entries) if ((w as number) > 0) out[version] = w as number;
  return out;
}
