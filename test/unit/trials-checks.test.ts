/** The fault trials' decision-log check (bench/trials/checks.ts): it must catch a step done twice. */
import { duplicatedSteps } from '../../bench/trials/checks';
import type { Decision } from '../../src/workflows/types';

const d = (kind: Decision['kind'], reason: string): Decision => ({
  at: '2026-01-01T00:00:00.000Z',
  kind,
  by: 'promote',
  reason,
  evidence: [],
});

const clean: Decision[] = [
  d('started', 'promote m 2'),
  d('staged', '2 deployed at http://127.0.0.1:1'),
  d('gate', 'feature_schema: Pass'),
  d('lease', 'traffic lease taken (15s, renewed every 3s)'),
  d('shadow', 'mirroring 100% of traffic to 2 for 6s'),
  d('shadow', 'shadow disagreement: Pass'),
  d('lease', 'traffic lease taken (15s, renewed every 3s)'),
  d('traffic', 'step 1 of 3: 2 at 20%'),
  d('check', 'error_rate: Inconclusive'),
  d('check', 'error_rate: Pass'),
  d('traffic', 'step 2 of 3: 2 at 50%'),
  d('traffic', 'step 3 of 3: 2 at 90%'),
  d('watch', 'watching for 10s with 10% held back on 1'),
  d('promoted', 'champion -> 2; 100% of traffic'),
  d('lease', 'traffic lease released: past the point of no return'),
  d('completed', 'succeeded: 2 promoted'),
];

test.each([
  ['a clean log', clean, []],
  [
    'a traffic step twice',
    [...clean.slice(0, 8), d('traffic', 'step 1 of 3: 2 at 20%')],
    ['2x traffic: step 1 of 3: 2 at 20%', 'traffic step 1 recorded after step 1'],
  ],
  ['promoted twice', [...clean, d('promoted', 'champion -> 2; 100% of traffic')], ['2x promoted']],
  [
    'a rollback step twice',
    [d('rollback', 'traffic: 100% to 1, shadow off'), d('rollback', 'traffic: 100% to 1, shadow off')],
    ['2x rollback: traffic: 100% to 1, shadow off'],
  ],
  [
    'steps out of order',
    [d('traffic', 'step 2 of 3: 2 at 50%'), d('traffic', 'step 1 of 3: 2 at 20%')],
    ['traffic step 1 recorded after step 2'],
  ],
  [
    'the point of no return twice',
    [...clean, clean[14]!],
    ['2x lease: traffic lease released: past the point of no return'],
  ],
])('%s', (_name, decisions, expected) => {
  expect(duplicatedSteps(decisions)).toEqual(expected);
});
