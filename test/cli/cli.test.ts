import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  phaseIs,
  seedModel,
  startStack,
  testAddress,
  uniqueModel,
  waitForStatus,
  type TestStack,
} from '../helpers/stack';

const ROOT = join(__dirname, '../..');
let stack: TestStack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => stack?.stop());

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the promote CLI as a user would, against the test server and this file's worker. */
function promote(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/client/main.ts'), ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: testAddress(),
        TEMPORAL_NAMESPACE: 'default',
        PROMOTE_TASK_QUEUE: stack.taskQueue,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const dir = mkdtempSync(join(tmpdir(), 'promote-cli-'));
function planFile(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

const PLAN = `
gates: [{ check: feature_schema }]
canary:
  steps:
    - { traffic: 10, bake: 1s }
    - { traffic: 100, bake: 1s, approval: { approvers: [alice, bob], required: 1, timeout: 5m } }
guardrails: [{ metric: error_rate, max: 0.05, minSamples: 20 }]
analysis: { interval: 1s }
`;

test('plan validate: OK for the examples, every problem as path: message with exit 2 for a broken plan', async () => {
  for (const example of ['examples/fraud-model.yaml', 'examples/demo.yaml']) {
    await expect(promote('plan', 'validate', example)).resolves.toMatchObject({
      code: 0,
      stdout: `${example}: OK\n`,
    });
  }
  const bad = planFile(
    'bad.yaml',
    'canary:\n  steps:\n    - { traffic: 50, bake: 5x }\n    - { traffic: 20 }\nguardrails: [{ metric: cpu }]\n',
  );
  const run = await promote('plan', 'validate', bad);
  expect(run.code).toBe(2);
  expect(run.stderr.trim().split('\n')).toEqual([
    `${bad}: canary.steps[0].bake: expected a duration such as 90s, 5m, 4h or 7d`,
    `${bad}: guardrails[0].metric: Invalid option: expected one of "error_rate"|"latency_p50_ms"|"latency_p95_ms"|"latency_p99_ms"`,
    `${bad}: canary.steps[1].traffic: traffic must be strictly greater than the previous step's (50)`,
    `${bad}: canary.steps[1].traffic: the last step must bring traffic to 100`,
    `${bad}: guardrails[0]: a guardrail needs at least one of max, min or relativeIncrease`,
  ]);
  const missing = await promote('plan', 'validate', join(dir, 'nope.yaml'));
  expect(missing).toMatchObject({ code: 2, stderr: `${join(dir, 'nope.yaml')}: (file): no such file\n` });
});

test('plan schema prints the JSON Schema', async () => {
  const run = await promote('plan', 'schema');
  expect(run.code).toBe(0);
  const schema = JSON.parse(run.stdout) as { $schema: string; required: string[] };
  expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
  expect(schema.required).toEqual(['canary']);
});

test('start, refused approval (3), approval, status --json, list, and a second start refused (3)', async () => {
  const model = uniqueModel('cli');
  seedModel(stack.plane, model, { v2: {}, v3: {} });
  const plan = planFile('plan.yaml', PLAN);
  const started = await promote(
    'start',
    '--model',
    model,
    '--version',
    'v2',
    '--plan',
    plan,
    '--as',
    'alice',
  );
  expect(started.code).toBe(0);
  expect(started.stdout).toMatch(
    new RegExp(`^started promotion-${model} \\(run [0-9a-f-]+, plan sha256:[0-9a-f]{12}\\)\\n$`),
  );

  const again = await promote('start', '--model', model, '--version', 'v3', '--plan', plan);
  expect(again.code).toBe(3);
  expect(again.stderr).toMatch(
    new RegExp(`^promote: a promotion of ${model} is already running: promotion-${model} \\(candidate v2, `),
  );

  await waitForStatus(stack.promotions, model, phaseIs('awaiting_approval'));
  await expect(promote('approve', model, '--as', 'alice')).resolves.toMatchObject({
    code: 3,
    stderr: 'promote: alice started this promotion and cannot approve it (no self-approval)\n',
  });
  await expect(promote('approve', model, '--as', 'mallory')).resolves.toMatchObject({
    code: 3,
    stderr: 'promote: mallory is not an approver of step 2 (allowed: alice, bob)\n',
  });

  const status = await promote('status', model, '--json');
  expect(status.code).toBe(0);
  const json = JSON.parse(status.stdout) as Record<string, unknown>;
  expect(json).toMatchObject({
    id: `promotion-${model}`,
    model,
    candidate: 'v2',
    champion: 'v1',
    phase: 'awaiting_approval',
    outcome: null,
    trafficPercent: 10,
    step: { index: 1, total: 2 },
    pendingApproval: { step: 1, approvers: ['alice', 'bob'], required: 1, received: 0 },
  });
  expect(json.planHash).toMatch(/^sha256:[0-9a-f]{64}$/);
  expect(json.refusalsTotal).toBe(2);

  const listed = await promote('list', '--model', model, '--json');
  expect(JSON.parse(listed.stdout)).toEqual([
    expect.objectContaining({ id: `promotion-${model}`, model, candidate: 'v2', status: 'RUNNING' }),
  ]);

  await expect(promote('approve', model, '--as', 'bob', '--comment', 'fine')).resolves.toMatchObject({
    code: 0,
    stdout: 'approval counted (1 of 1)\n',
  });
  const done = await promote('status', model, '--watch');
  expect(done.code).toBe(0);
  expect(done.stdout).toMatch(/phase: {4}completed \(succeeded\)/);
  await expect(promote('abort', model, '--as', 'oncall', '--reason', 'late')).resolves.toMatchObject({
    code: 3,
    stderr: `promote: promotion-${model} has already completed (succeeded)\n`,
  });
});

test('abort mid-canary returns traffic to the champion; unknown promotion exits 4; bad input exits 2', async () => {
  const model = uniqueModel('cli-abort');
  seedModel(stack.plane, model);
  const plan = planFile('long.yaml', PLAN.replace('bake: 1s }', 'bake: 60s }'));
  expect((await promote('start', '--model', model, '--version', 'v2', '--plan', plan)).code).toBe(0);
  await waitForStatus(stack.promotions, model, (s) => s.trafficPercent === 10);
  await expect(promote('abort', model, '--as', 'oncall', '--reason', 'pager')).resolves.toMatchObject({
    code: 0,
    stdout: 'abort accepted; rolling back\n',
  });
  expect((await stack.promotions.result(model)).outcome).toBe('aborted');
  expect(stack.plane.snapshot().routes[model]!.weights).toEqual({ v1: 100 });

  await expect(promote('status', 'no-such-model')).resolves.toMatchObject({
    code: 4,
    stderr: 'promote: no promotion promotion-no-such-model\n',
  });
  await expect(
    promote('start', '--model', 'bad name', '--version', 'v2', '--plan', plan),
  ).resolves.toMatchObject({
    code: 2,
    stderr: 'promote: --model "bad name" is not a valid model name (letters, digits, . _ -)\n',
  });
  const noReason = await promote('reject', model, '--as', 'bob');
  expect(noReason.code).toBe(2);
  expect(noReason.stderr).toContain("required option '--reason <text>' not specified");
});
