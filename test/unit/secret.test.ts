import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readOptionalSecret, readSecret } from '../../src/common/secret';

const dir = mkdtempSync(join(tmpdir(), 'promote-secret-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

test('a secret comes from the variable or from the file it names, trimmed', () => {
  expect(readSecret({ T: ' abc \n' }, 'T', 'test')).toBe('abc');
  expect(readSecret({ T_FILE: file('t', 'from-file\n') }, 'T', 'test')).toBe('from-file');
  expect(readOptionalSecret({}, 'T', 'test')).toBeUndefined();
});

test('both, neither (when required), a missing file and an empty file are named errors', () => {
  expect(() => readSecret({ T: 'a', T_FILE: file('both', 'b') }, 'T', 'test')).toThrow(
    'set T or T_FILE, not both (test)',
  );
  expect(() => readSecret({}, 'T', 'test')).toThrow('T or T_FILE is required (test)');
  expect(() => readOptionalSecret({ T_FILE: join(dir, 'absent') }, 'T', 'test')).toThrow(
    /^T_FILE: cannot read .*absent/,
  );
  expect(() => readOptionalSecret({ T_FILE: file('empty', ' \n') }, 'T', 'test')).toThrow(
    /T_FILE: .* is empty/,
  );
});
