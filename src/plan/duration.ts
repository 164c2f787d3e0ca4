/**
 * Durations in plan files: one or more `<number><unit>` parts, units ms, s, m, h, d
 * (e.g. `250ms`, `90s`, `5m`, `4h`, `7d`, `1h30m`). Pure; safe to use inside workflows.
 */

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
export const DURATION_PATTERN = '^(\\d+(\\.\\d+)?(ms|s|m|h|d))+$';
const WHOLE = new RegExp(DURATION_PATTERN);

/** True if `text` is a duration this module can parse. */
export function isDuration(text: string): boolean {
  return WHOLE.test(text);
}

/** Milliseconds in `text`; throws on anything that is not a duration. */
export function parseDuration(text: string): number {
  if (!isDuration(text)) {
    throw new RangeError(`"${text}" is not a duration (expected e.g. 90s, 5m, 4h, 7d)`);
  }
  let total = 0;
  for (const match of text.matchAll(PART)) {
    total += Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  }
  return Math.round(total);
}

/** A compact human form of a millisecond count: `1h30m`, `45s`, `250ms`. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  if (Math.round(ms) < 1000) return `${Math.round(ms)}ms`;
  let rest = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, secs] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= secs) {
      parts.push(`${Math.floor(rest / secs)}${unit}`);
      rest %= secs;
    }
  }
  return parts.join('');
}
