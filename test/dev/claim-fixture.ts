/** Claims a data folder the way `promote dev up` does and holds it until killed (children.test.ts). */
import { RunDir } from '../../src/dev/children';

void RunDir.claim(process.argv[2]!, () => undefined).then(() => {
  process.stdout.write('claimed\n');
  setInterval(() => undefined, 60_000);
});
