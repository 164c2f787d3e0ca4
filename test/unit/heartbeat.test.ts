/**
 * Activities heartbeat while they run (src/activities/heartbeat.ts), so a worker killed in the
 * middle of one is noticed within the heartbeat timeout instead of the start-to-close timeout.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { withHeartbeats } from '../../src/activities/heartbeat';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function environment(heartbeatTimeoutMs: number | undefined) {
  const env = new MockActivityEnvironment(heartbeatTimeoutMs === undefined ? {} : { heartbeatTimeoutMs });
  const beats: number[] = [];
  env.on('heartbeat', () => beats.push(Date.now()));
  return { env, beats };
}

test('an activity scheduled with a heartbeat timeout heartbeats while it runs, and stops when done', async () => {
  const { env, beats } = environment(400);
  const slow = withHeartbeats(async (x: number) => {
    await sleep(650);
    return x * 2;
  });
  await expect(env.run(slow, 21)).resolves.toBe(42);
  // Every quarter of the timeout: about six beats in 650 ms, at least one per 400 ms window.
  expect(beats.length).toBeGreaterThanOrEqual(4);
  const after = beats.length;
  await sleep(300);
  expect(beats.length).toBe(after);
});

test('failures pass through unchanged and stop the heartbeats', async () => {
  const { env, beats } = environment(400);
  const failing = withHeartbeats(async () => {
    await sleep(250);
    throw new Error('gateway unreachable');
  });
  await expect(env.run(failing)).rejects.toThrow('gateway unreachable');
  const after = beats.length;
  expect(after).toBeGreaterThanOrEqual(1);
  await sleep(300);
  expect(beats.length).toBe(after);
});

test('an activity scheduled without a heartbeat timeout does not heartbeat', async () => {
  const { env, beats } = environment(undefined);
  await env.run(
    withHeartbeats(async () => {
      await sleep(300);
    }),
  );
  expect(beats).toEqual([]);
});
