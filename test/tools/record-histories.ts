/**
 * Records the workflow histories the replay test checks: run with
 *   TEMPORAL_CLI_PATH=... npx tsx test/tools/record-histories.ts
 * after a deliberate change to the workflow's commands, and commit test/histories/*.json.
 * (Recording is a tool, not a test: committed histories are what prove replay compatibility.)
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { startDevServer } from '../../src/dev/temporal';
import {
  fastPlan,
  phaseIs,
  seedModel,
  startStack,
  uniqueModel,
  waitForStatus,
  type TestStack,
} from '../helpers/stack';
import { freePort, temporalCliPath } from '../helpers/tools';

async function record(
  stack: TestStack,
  name: string,
  drive: (id: string) => Promise<void>,
  candidate = {},
): Promise<void> {
  const model = uniqueModel(name);
  seedModel(stack.plane, model, { v2: candidate });
  const { id } = await stack.promotions.start({ model, version: 'v2', plan: fastPlan(), startedBy: 'ci' });
  await drive(id);
  const result = await stack.promotions.result(id);
  // The CLI's JSON export is the format historyFromJSON reads back.
  const json = execFileSync(
    temporalCliPath(),
    ['workflow', 'show', '--address', process.env.PROMOTE_TEST_ADDRESS!, '-w', id, '--output', 'json'],
    { encoding: 'utf8' },
  );
  writeFileSync(join(__dirname, '../histories', `${name}.json`), json);
  process.stdout.write(
    `${name}: ${result.outcome}, ${(JSON.parse(json) as { events: unknown[] }).events.length} events\n`,
  );
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'promote-record-'));
  const server = await startDevServer({ cliPath: temporalCliPath(), port: await freePort() });
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../src/workflows'),
    logger: new DefaultLogger('WARN'),
  });
  writeFileSync(join(dir, 'bundle.js'), code);
  process.env.PROMOTE_TEST_ADDRESS = server.address;
  process.env.PROMOTE_TEST_BUNDLE = join(dir, 'bundle.js');
  const stack = await startStack();
  try {
    await record(stack, 'approved', async (id) => {
      await waitForStatus(stack.promotions, id, phaseIs('awaiting_approval'));
      await stack.promotions.vote(id, 'approve', 'mallory').catch(() => undefined);
      await stack.promotions.vote(id, 'approve', 'bob', 'ok');
    });
    await record(stack, 'guardrail-rollback', () => Promise.resolve(), { behaviour: { errorRate: 0.3 } });
    await record(stack, 'aborted-while-paused', async (id) => {
      await waitForStatus(stack.promotions, id, (s) => s.trafficPercent === 10);
      await stack.promotions.control(id, 'pause', 'oncall', 'look');
      await stack.promotions.control(id, 'abort', 'oncall', 'bad dashboards');
    });
  } finally {
    await stack.stop();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
