/** Crash-safe state files, and gateway state keyed only by valid names in Maps. */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsonFile } from '../../src/providers/inprocess/store';
import { StateStore } from '../../src/serving/gateway/state';

// The module object itself (what store.ts calls through), so its functions can be spied on.
const fs = jest.requireActual<typeof import('node:fs')>('node:fs');
const dir = () => mkdtempSync(join(tmpdir(), 'promote-state-'));

afterEach(() => jest.restoreAllMocks());

test('a write goes to a temporary file, is flushed, renamed over the old one, and the directory flushed', () => {
  const d = dir();
  const file = new JsonFile(join(d, 'state.json'), () => ({ n: 0 }));
  const calls: string[] = [];
  const fsync = jest.spyOn(fs, 'fsyncSync');
  const rename = jest.spyOn(fs, 'renameSync');
  fsync.mockImplementation((fd) => {
    calls.push(`fsync ${fs.readlinkSync(`/proc/self/fd/${fd}`).replace(d, '<dir>')}`);
  });
  rename.mockImplementation((from, to) => {
    calls.push(`rename ${String(from).replace(d, '<dir>')} -> ${String(to).replace(d, '<dir>')}`);
    rename.mockRestore();
    fs.renameSync(from, to);
  });
  file.write({ n: 1 });
  expect(calls).toEqual([
    `fsync <dir>/state.json.${process.pid}.tmp`,
    `rename <dir>/state.json.${process.pid}.tmp -> <dir>/state.json`,
    'fsync <dir>',
  ]);
  expect(file.read()).toEqual({ n: 1 });
  expect(readdirSync(d)).toEqual(['state.json']);
});

test('a failed write leaves the old document and no temporary file, and says which file', () => {
  const d = dir();
  const path = join(d, 'state.json');
  const file = new JsonFile(path, () => ({ n: 0 }));
  file.write({ n: 1 });
  jest.spyOn(fs, 'renameSync').mockImplementation(() => {
    throw new Error('ENOSPC: no space left on device');
  });
  expect(() => file.write({ n: 2 })).toThrow(`cannot write state file ${path}: Error: ENOSPC`);
  expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ n: 1 });
  expect(readdirSync(d)).toEqual(['state.json']);
});

test('a state file with prototype names loads only valid names, into Maps', () => {
  const d = dir();
  mkdirSync(d, { recursive: true });
  writeFileSync(
    join(d, 'gateway-state.json'),
    `{"routes": {"__proto__": {"weights": {"v1": 100}}, "fraud": {"weights": {"__proto__": 50, "constructor": 100}, "shadow": null}},
      "backends": {"fraud": {"constructor": "http://127.0.0.1:1", "__proto__": "http://evil"}, "constructor": {"v1": "http://127.0.0.1:2"}},
      "features": {"fraud": {"__proto__": "string", "amount": "double"}}}`,
  );
  const store = new StateStore(d, Date.now());
  expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'weights')).toBe(false);
  const fraud = store.get('fraud')!;
  expect(Object.entries(fraud.route!.weights)).toEqual([['constructor', 100]]);
  expect(fraud.route!.weights.toString).toBeUndefined(); // a null-prototype record
  expect([...fraud.backends]).toEqual([['constructor', 'http://127.0.0.1:1']]);
  expect([...fraud.features]).toEqual([
    ['__proto__', 'string'],
    ['amount', 'double'],
  ]);
  expect(store.get('constructor')!.backends.get('v1')).toBe('http://127.0.0.1:2');
  expect(store.get('__proto__')).toBeUndefined();
  // Written back, the file holds the same valid state (and a leases section).
  store.save();
  const saved = JSON.parse(readFileSync(join(d, 'gateway-state.json'), 'utf8')) as Record<string, unknown>;
  expect(saved).toEqual({
    routes: {
      fraud: { weights: { constructor: 100 }, shadow: null, stickyKey: 'header:x-entity-id', sliceKeys: [] },
    },
    backends: { fraud: { constructor: 'http://127.0.0.1:1' }, constructor: { v1: 'http://127.0.0.1:2' } },
    features: { fraud: JSON.parse('{"__proto__": "string", "amount": "double"}') as unknown },
    faults: {},
    policies: {},
    leases: {},
  });
});
