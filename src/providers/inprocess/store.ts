/** A JSON document persisted atomically (write to a temporary file, then rename). One writer process. */
import { mkdirSync, readFileSync, renameSync, writeFileSync, appendFileSync } from 'node:fs';
import { dirname } from 'node:path';

export class JsonFile<T> {
  constructor(
    readonly file: string | null,
    private readonly empty: () => T,
  ) {}

  read(): T {
    if (!this.file) return this.empty();
    try {
      return JSON.parse(readFileSync(this.file, 'utf8')) as T;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.empty();
      throw new Error(`cannot read state file ${this.file}: ${String(err)}`);
    }
  }

  write(value: T): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(value, null, 1));
    renameSync(tmp, this.file);
  }

  append(line: unknown): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true });
    appendFileSync(this.file, `${JSON.stringify(line)}\n`);
  }
}
