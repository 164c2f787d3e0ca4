/**
 * Property-based fuzzing of plan files: whatever the file holds (arbitrary text, arbitrary JSON,
 * the example plans mutated in every way a hostile or careless author could), `promote plan
 * validate` answers with exit 0 (`<file>: OK`) or exit 2 and only `<file>: <path>: <message>`
 * lines: never another exit code, a stack trace or a hang. 1,000 cases in process through runCli,
 * 30 through the real `bin/promote` process.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { runCli } from '../../src/client/main';

const ROOT = join(__dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'promote-fuzz-'));
/** Per-case bound, ms: a case above it counts as a hang. */
const BOUND_MS = 3000;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const examples: Json[] = readdirSync(join(ROOT, 'examples'))
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .map((f) => parse(readFileSync(join(ROOT, 'examples', f), 'utf8')) as Json);

// ---- values ----

const hugeNumber = fc.constantFrom(
  1e308,
  -1e308,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  2 ** 53 + 1,
  -(2 ** 63),
  1e21,
  -0,
  0.1 + 0.2,
);
const nanLike = fc.constantFrom(
  'NaN',
  'nan',
  '.nan',
  '.NaN',
  'Infinity',
  '-Infinity',
  '.inf',
  '-.inf',
  '1e999',
  '-1e999',
  '0x1F',
  '0o17',
  '1_000',
  '١٢',
  ' 5 ',
  '',
  '5m5m',
  '-5m',
  '0s',
  '99999999999999999999d',
  'null',
  '~',
  'true',
);
/** Nested arrays or objects `depth` levels deep around a leaf. */
const deep = fc
  .record({
    depth: fc.integer({ min: 50, max: 3000 }),
    objects: fc.boolean(),
    leaf: fc.jsonValue({ maxDepth: 1 }),
  })
  .map(({ depth, objects, leaf }) => {
    let v = leaf as Json;
    for (let i = 0; i < depth; i++) v = objects ? { a: v } : [v];
    return v;
  });
/** A long array of one scalar (scalars, so later mutations cannot multiply through shared items). */
const hugeArray = fc
  .record({
    length: fc.integer({ min: 1000, max: 20_000 }),
    item: fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.boolean(), fc.constant(null)),
  })
  .map(({ length, item }) => Array.from({ length }, (): Json => item));
const hostileKey = fc.oneof(
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    'hasOwnProperty',
    'valueOf',
    '__defineGetter__',
  ),
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('a: b', 'a\nb', 'x\r\ny: 1', '', ' ', '[0]', 'a.b', '\u2028', '\u0000', '"', '#'),
);
const anyValue: fc.Arbitrary<Json> = fc.oneof(
  { arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>, weight: 4 },
  { arbitrary: hugeNumber, weight: 2 },
  { arbitrary: nanLike, weight: 2 },
  { arbitrary: deep, weight: 1 },
  { arbitrary: hugeArray, weight: 1 },
);

// ---- mutations of the example plans ----

/** The container paths (objects and arrays) of a document, root first, down to a depth of 12. */
function containers(doc: Json, path: (string | number)[] = []): (string | number)[][] {
  if (doc === null || typeof doc !== 'object' || path.length > 12) return [];
  const children = Array.isArray(doc)
    ? doc.slice(0, 50).flatMap((v, i) => containers(v, [...path, i]))
    : Object.entries(doc).flatMap(([k, v]) => containers(v, [...path, k]));
  return [path, ...children];
}

function at(doc: Json, path: (string | number)[]): Json {
  let node = doc;
  for (const key of path) node = (node as Record<string, Json>)[key]!;
  return node;
}

/** Sets an own property, `__proto__` included (a plain assignment would change the prototype). */
function setOwn(target: object, key: string | number, value: Json): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

type Mutation =
  | { kind: 'replace'; pick: number; slot: number; value: Json }
  | { kind: 'delete'; pick: number; slot: number }
  | { kind: 'add'; pick: number; key: string; value: Json };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), pick: fc.nat(), slot: fc.nat(), value: anyValue }),
  fc.record({ kind: fc.constant('delete' as const), pick: fc.nat(), slot: fc.nat() }),
  fc.record({ kind: fc.constant('add' as const), pick: fc.nat(), key: hostileKey, value: anyValue }),
);

function mutate(base: Json, mutations: Mutation[]): Json {
  const doc = structuredClone(base);
  for (const m of mutations) {
    const paths = containers(doc);
    if (paths.length === 0) break;
    const node = at(doc, paths[m.pick % paths.length]!) as Record<string, Json> | Json[];
    const keys = Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
    if (m.kind === 'add') {
      if (Array.isArray(node)) node.push(m.value);
      else setOwn(node, m.key, m.value);
      continue;
    }
    if (keys.length === 0) continue;
    const key = keys[m.slot % keys.length]!;
    if (m.kind === 'replace') setOwn(node, key, m.value);
    else if (Array.isArray(node)) node.splice(key as number, 1);
    else delete node[key as string];
  }
  return doc;
}

// ---- text ----

/** Text-level edits applied after serializing: duplicated lines (keys), truncation, byte noise. */
type TextEdit =
  | { kind: 'duplicateLine'; line: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; text: string };

const yamlNoise = fc.constantFrom(
  '&a ',
  '*a',
  '<<: *a\n',
  '!!binary ',
  '!!python/object:os.system ',
  '? ',
  '--- ',
  '...\n',
  '%YAML 1.1\n',
  '%TAG ! tag:x,2000:\n',
  '{',
  '}',
  '[',
  ']',
  ': ',
  '- ',
  '"',
  "'",
  '#',
  '|\n',
  '>-\n',
  '\t',
  '\r',
  '\u0000',
  '\uFEFF',
  '\uD800',
);
const textEdit: fc.Arbitrary<TextEdit> = fc.oneof(
  fc.record({ kind: fc.constant('duplicateLine' as const), line: fc.nat() }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    text: fc.oneof(yamlNoise, fc.string({ unit: 'binary', maxLength: 8 })),
  }),
);

function editText(text: string, edits: TextEdit[]): string {
  let out = text;
  for (const e of edits) {
    if (e.kind === 'duplicateLine') {
      const lines = out.split('\n');
      const i = e.line % Math.max(lines.length, 1);
      lines.splice(i, 0, lines[i] ?? '');
      out = lines.join('\n');
    } else if (e.kind === 'truncate') out = out.slice(0, e.at % (out.length + 1));
    else {
      const i = e.at % (out.length + 1);
      out = out.slice(0, i) + e.text + out.slice(i);
    }
  }
  return out;
}

/** YAML or JSON text (JSON is YAML too); JSON when the YAML writer cannot nest that deep. */
function serialize(doc: Json, asYaml: boolean): string {
  if (asYaml) {
    try {
      return stringify(doc, { aliasDuplicateObjects: false });
    } catch {
      // RangeError: the writer recurses per level
    }
  }
  return JSON.stringify(doc, null, 1);
}

/** Exponential alias expansion ("billion laughs"), alone or in front of a plan. */
const aliasBomb = fc
  .record({
    levels: fc.integer({ min: 2, max: 12 }),
    width: fc.integer({ min: 2, max: 12 }),
    where: fc.nat(),
  })
  .map(({ levels, width, where }) => {
    const lines = [`l0: &l0 [${Array(width).fill('"lol"').join(', ')}]`];
    for (let i = 1; i < levels; i++)
      lines.push(
        `l${i}: &l${i} [${Array(width)
          .fill(`*l${i - 1}`)
          .join(', ')}]`,
      );
    const last = `*l${levels - 1}`;
    return where % 3 === 0
      ? lines.join('\n')
      : where % 3 === 1
        ? `${lines.join('\n')}\ndescription: ${last}\n`
        : `x-anchors:\n${lines.map((l) => `  ${l}`).join('\n')}\ngates: ${last}\ncanary: { steps: [{ traffic: 100 }] }\n`;
  });

/** The file contents of one case. */
type Case = { name: string; bytes: Buffer };

const text = (name: string, arb: fc.Arbitrary<string>): fc.Arbitrary<Case> =>
  arb.map((t) => ({ name, bytes: Buffer.from(t, 'utf8') }));

const cases: fc.Arbitrary<Case> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .record({
        base: fc.constantFrom(...examples),
        mutations: fc.array(mutation, { minLength: 1, maxLength: 4 }),
        asYaml: fc.boolean(),
        edits: fc.array(textEdit, { maxLength: 2 }),
      })
      .map(({ base, mutations, asYaml, edits }) => ({
        name: 'mutated',
        bytes: Buffer.from(editText(serialize(mutate(base, mutations), asYaml), edits), 'utf8'),
      })),
  },
  {
    weight: 1,
    arbitrary: text(
      'yaml-soup',
      fc.array(yamlNoise, { maxLength: 60 }).map((a) => a.join('')),
    ),
  },
  { weight: 1, arbitrary: text('text', fc.string({ maxLength: 300 })) },
  { weight: 1, arbitrary: text('unicode', fc.string({ unit: 'binary', maxLength: 300 })) },
  {
    weight: 2,
    arbitrary: fc
      .record({ value: fc.jsonValue({ maxDepth: 6 }), asYaml: fc.boolean() })
      .map(({ value, asYaml }) => ({
        name: 'json-value',
        bytes: Buffer.from(serialize(value as Json, asYaml)),
      })),
  },
  { weight: 1, arbitrary: text('alias-bomb', aliasBomb) },
  {
    weight: 1,
    arbitrary: fc.uint8Array({ maxLength: 2000 }).map((b) => ({ name: 'binary', bytes: Buffer.from(b) })),
  },
);

// ---- the property ----

let counter = 0;
function writeCase(c: Case): string {
  const file = join(dir, `${c.name}-${counter++}.yaml`);
  writeFileSync(file, c.bytes);
  return file;
}

/** What is wrong with one run's answer, or null when it keeps the contract. */
function violation(file: string, code: number, stdout: string, stderr: string, ms: number): string | null {
  if (ms > BOUND_MS) return `took ${Math.round(ms)}ms (bound ${BOUND_MS}ms)`;
  if (/^\s+at .+:\d+:\d+\)?$/m.test(stderr)) return `a stack trace on stderr: ${stderr.slice(0, 500)}`;
  if (code === 0)
    return stdout === `${file}: OK\n` && stderr === '' ? null : `exit 0 with ${stdout} ${stderr}`;
  if (code !== 2) return `exit ${code}: ${stderr.slice(0, 500)}`;
  if (stdout !== '') return `exit 2 with stdout ${stdout.slice(0, 200)}`;
  if (!stderr.endsWith('\n') || stderr.length <= 1) return `exit 2 with stderr ${JSON.stringify(stderr)}`;
  for (const line of stderr.slice(0, -1).split('\n')) {
    if (!line.startsWith(`${file}: `))
      return `a line without the file: ${JSON.stringify(line.slice(0, 300))}`;
    const rest = line.slice(file.length + 2);
    const cut = rest.lastIndexOf(': ');
    if (cut <= 0 || cut === rest.length - 2)
      return `a line without <path>: <message>: ${JSON.stringify(line.slice(0, 300))}`;
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(line))
      return `a control character in a line: ${JSON.stringify(line.slice(0, 300))}`;
  }
  return null;
}

async function validateInProcess(
  file: string,
): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const out: string[] = [];
  const err: string[] = [];
  const stdoutWrite = process.stdout.write.bind(process.stdout);
  const stderrWrite = process.stderr.write.bind(process.stderr);
  const capture =
    (into: string[]) =>
    (chunk: string | Uint8Array): boolean => {
      into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      return true;
    };
  process.stdout.write = capture(out);
  process.stderr.write = capture(err);
  const started = performance.now();
  try {
    const code = await runCli(['plan', 'validate', file]);
    return { code, stdout: out.join(''), stderr: err.join(''), ms: performance.now() - started };
  } catch (e) {
    return { code: -1, stdout: out.join(''), stderr: `runCli threw: ${String(e)}`, ms: 0 };
  } finally {
    process.stdout.write = stdoutWrite;
    process.stderr.write = stderrWrite;
  }
}

test('the example plans are valid (the mutations start from valid plans)', async () => {
  for (const example of examples) {
    const file = writeCase({ name: 'example', bytes: Buffer.from(stringify(example)) });
    expect(await validateInProcess(file)).toMatchObject({ code: 0, stderr: '' });
  }
});

test('1,000 generated plan files: exit 0, or exit 2 with `<file>: <path>: <message>` lines; no stack trace, no hang', async () => {
  const kinds = new Map<string, number>();
  const codes = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(cases, async (c) => {
      const file = writeCase(c);
      const r = await validateInProcess(file);
      kinds.set(c.name, (kinds.get(c.name) ?? 0) + 1);
      codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
      const problem = violation(file, r.code, r.stdout, r.stderr, r.ms);
      if (problem) throw new Error(`${file}: ${problem}`);
    }),
    { numRuns: 1000, seed: Number(process.env.PROMOTE_FUZZ_SEED ?? 20261124) },
  );
  // The generators reach every kind of input, and both answers occur.
  expect([...kinds.keys()].sort()).toEqual(
    ['alias-bomb', 'binary', 'json-value', 'mutated', 'text', 'unicode', 'yaml-soup'].sort(),
  );
  expect(codes.get(2)).toBeGreaterThan(0);
}, 300_000);

// bin/promote builds dist/ on first use and says so on stderr: build before measuring its output.
beforeAll(() => {
  const r = spawnSync('bash', ['-c', 'source scripts/lib.sh && ensure_build'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`building dist/ failed: ${r.stderr}`);
}, 300_000);

test('30 generated plan files through the real bin/promote process', () => {
  const samples = fc.sample(cases, { numRuns: 30, seed: 7 });
  for (const c of samples) {
    const file = writeCase(c);
    const started = performance.now();
    const r = spawnSync(join(ROOT, 'bin/promote'), ['plan', 'validate', file], {
      encoding: 'utf8',
      timeout: 30_000,
      killSignal: 'SIGKILL',
    });
    const ms = performance.now() - started;
    if (r.error) throw new Error(`${file}: ${r.error.message}`);
    // Process start-up is not the plan's cost: the bound here is the spawn timeout.
    const problem = violation(file, r.status ?? -1, r.stdout, r.stderr, ms > 30_000 ? ms : 0);
    if (problem) throw new Error(`${file}: ${problem}`);
  }
}, 600_000);

// ---- cases the fuzzing found, kept as named regressions (through the real process) ----

function validateProcess(name: string, content: string | Buffer, timeoutMs = 20_000) {
  const file = writeCase({ name, bytes: Buffer.from(content) });
  const started = performance.now();
  const r = spawnSync(process.execPath, [join(ROOT, 'dist/client/main.js'), 'plan', 'validate', file], {
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    maxBuffer: 64 * 1024 * 1024,
  });
  return { file, r, ms: performance.now() - started };
}

describe('found by fuzzing', () => {
  beforeAll(() => {
    // The built CLI (bin/promote builds it; the test above ran it).
    expect(readdirSync(join(ROOT, 'dist/client'))).toContain('main.js');
  });

  test.each<[string, string]>([
    ['a newline in an unknown key', '{"canary": {"a\\nb": 1, "steps": [{"traffic": 100}]}}'],
    [
      'a carriage return and a tab in unknown keys',
      '{"x\\r": 1, "y\\tz": 2, "canary": {"steps": [{"traffic": 100}]}}',
    ],
    [
      'a line separator in an approver',
      '{"canary": {"steps": [{"traffic": 100, "approval": {"approvers": ["a\\u2028", "a\\u2028"]}}]}}',
    ],
    ['an alias to an anchor that is not defined', 'description: *x\n'],
    [
      'an alias bomb',
      'a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n',
    ],
    ['a collection as a key (no Node warning on stderr)', '{[a]: 1}\n'],
  ])('%s: exit 2, one `<file>: <path>: <message>` line per problem', (name, content) => {
    const { file, r, ms } = validateProcess(name.replace(/\W+/g, '-'), content);
    expect(violation(file, r.status ?? -1, r.stdout, r.stderr, ms > 20_000 ? ms : 0)).toBeNull();
    expect(r.status).toBe(2);
  });

  test('10,000 problems are all printed when stderr is a pipe (not cut by the exit)', () => {
    // (An over-long array is one problem, "too big"; 10,000 unknown fields are 10,000 problems.)
    const doc = {
      canary: { steps: [{ traffic: 100 }] },
      ...Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`unknown${i}`, 1])),
    };
    const { file, r } = validateProcess('many-problems', JSON.stringify(doc));
    expect(r.status).toBe(2);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines.filter((l) => l.startsWith(`${file}: unknown`))).toHaveLength(10_000);
  });

  test('100,000 wrongly typed gates (a 400 KB file) are answered within the bound', () => {
    const doc = { gates: Array.from({ length: 100_000 }, () => 'x'), canary: { steps: [{ traffic: 100 }] } };
    // Process start-up (about a second) on top of the plan's own bound.
    const { file, r, ms } = validateProcess('huge-array', JSON.stringify(doc), BOUND_MS + 2000);
    expect(r.error?.message ?? null).toBeNull();
    expect(violation(file, r.status ?? -1, r.stdout, r.stderr, Math.max(0, ms - 2000))).toBeNull();
  });
});
