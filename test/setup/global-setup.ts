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
  // A free port can be taken by another process between the probe and the server's bind (the dev
  // server then exits: "address already in use"); a new port is tried, three times at most.
  let server: Awaited<ReturnType<typeof startDevServer>> | undefined;
  for (let attempt = 1; !server; attempt++) {
    try {
      server = await startDevServer({
        cliPath: temporalCliPath(),
        port: await freePort(),
        logFile: join(dir, `temporal-${attempt}.log`),
      });
    } catch (err) {
      if (attempt >= 3 || !/exited with/.test(String(err))) throw err;
      process.stderr.write(
        `promote tests: the Temporal dev server did not start (${String(err)}); trying another port\n`,
      );
    }
  }
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
