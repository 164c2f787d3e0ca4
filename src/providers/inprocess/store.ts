/**
 * A JSON document persisted crash-safely: written to a temporary file, flushed to disk, renamed over
 * the old one, then the directory flushed so the rename itself survives a power cut. A reader sees
 * either the old document or the new one, never a torn write. One writer process.
 */
import {
  appendFileSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';

/** Writes `text` to `file` and flushes it to disk before returning. */
function writeDurably(file: string, text: string): void {
  const fd = openSync(file, 'w');
  try {
    const bytes = Buffer.from(text, 'utf8');
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Flushes a directory's entries (a rename inside it) to disk. */
function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

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
    const dir = dirname(this.file);
    mkdirSync(dir, { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    try {
      writeDurably(tmp, JSON.stringify(value, null, 1));
      renameSync(tmp, this.file);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw new Error(`cannot write state file ${this.file}: ${String(err)}`);
    }
    fsyncDirectory(dir);
  }

  append(line: unknown): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true });
    appendFileSync(this.file, `${JSON.stringify(line)}\n`);
  }
}
