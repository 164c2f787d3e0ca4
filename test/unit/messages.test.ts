/**
 * Message payloads: the workflow's hand-written parser agrees with the zod schemas on every
 * payload (property-based, fast-check) and never repeats its input. (Why it is hand-written: a
 * flood of refused signals must not allocate Errors; test/workflow/failsafe.test.ts floods it.)
 */
import fc from 'fast-check';
import {
  MESSAGE_LIMITS,
  MESSAGE_SCHEMAS,
  parseMessage,
  type MessageKind,
} from '../../src/workflows/messages';

const KINDS: MessageKind[] = ['approve', 'reject', 'abort', 'pause', 'resume'];

/** Strings an attacker would send: control characters, separators, blanks, and lengths at the bounds. */
const nastyString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '',
    ' ',
    '\t',
    '\n',
    'a\nb',
    'a\u2028b',
    'a\u0000b',
    '\u00a0bob\u00a0',
    '  alice  ',
    '\u200b',
  ),
  fc.nat({ max: 3 }).map((d) => 'x'.repeat(MESSAGE_LIMITS.by - 1 + d)),
  fc.nat({ max: 3 }).map((d) => 'y'.repeat(MESSAGE_LIMITS.text - 1 + d)),
  fc.constant('z'.repeat(700 * 1024)),
);
const anyValue = fc.oneof(nastyString, fc.jsonValue({ maxDepth: 2 }), fc.constantFrom(undefined, null));
const payload = fc.oneof(
  fc.record({ by: anyValue, comment: anyValue, reason: anyValue, extra: anyValue }, { requiredKeys: [] }),
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(undefined, null, [], 'bob', 42, JSON.parse('{"__proto__": {"by": "bob"}}') as unknown),
);

test('parseMessage agrees with the schemas on every payload', () => {
  fc.assert(
    fc.property(fc.constantFrom(...KINDS), payload, (kind, p) => {
      const mine = parseMessage(kind, p);
      const zod = MESSAGE_SCHEMAS[kind].safeParse(p ?? {});
      expect(mine.ok).toBe(zod.success);
      if (mine.ok && zod.success) {
        const v = zod.data as { by: string; comment?: string; reason?: string };
        expect(mine.value).toEqual({ by: v.by, note: v.comment ?? v.reason });
      } else if (!mine.ok && !zod.success) {
        const first = zod.error.issues[0]!;
        const rootType = first.code === 'invalid_type' && first.path.length === 0;
        expect(mine.why).toBe(rootType ? `${kind} needs an object like {"by": "<user>"}` : first.message);
      }
    }),
    { numRuns: 3000 },
  );
});

test('a refusal never repeats the input and is short', () => {
  fc.assert(
    fc.property(fc.constantFrom(...KINDS), payload, (kind, p) => {
      const r = parseMessage(kind, p);
      if (r.ok) return;
      expect(r.why.length).toBeLessThan(120);
      expect(r.who.length).toBeLessThanOrEqual(MESSAGE_LIMITS.by);
      if (r.who !== '(invalid sender)') expect(r.who).toBe((p as { by: string }).by.trim());
    }),
    { numRuns: 2000 },
  );
});

test.each([
  ['approve', { by: ' bob ', comment: '  ' }, { by: 'bob', note: undefined }],
  ['reject', { by: 'bob', reason: ' too slow ' }, { by: 'bob', note: 'too slow' }],
  ['pause', { by: 'oncall' }, { by: 'oncall', note: undefined }],
] as const)('%s %j is accepted as %j', (kind, p, value) => {
  expect(parseMessage(kind, p)).toEqual({ ok: true, value });
});
