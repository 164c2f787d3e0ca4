/**
 * Starts one real Temporal dev server (in memory, headless) for the whole test run, with the
 * promotion search attributes registered by the same code as the dev stack, and bundles the
 * workflows once. Tests find both through environment variables.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { startDevServer } from '../../src/dev/temporal';
import { freePort, temporalCliPath } from '../helpers/tools';

export default async function globalSetup(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'promote-test-'));
  const port = await freePort();
  const server = await startDevServer({
    cliPath: temporalCliPath(),
    port,
    logFile: join(dir, 'temporal.log'),
  });
  (globalThis as Record<string, unknown>).__PROMOTE_DEV_SERVER__ = server;
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../src/workflows'),
    logger: new DefaultLogger('WARN'),
  });
  const bundlePath = join(dir, 'workflows-bundle.js');
  writeFileSync(bundlePath, code);
  process.env.PROMOTE_TEST_ADDRESS = server.address;
  process.env.PROMOTE_TEST_BUNDLE = bundlePath;
  process.env.PROMOTE_TEST_DIR = dir;
}
