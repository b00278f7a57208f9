/**
 * Reading and saving the dynamic-security file. A save is atomic and durable: the new text goes
 * to `<file>.new`, is fsynced, renamed over the file, and the directory is fsynced, so a crash
 * leaves either the old file or the new one, never a part of either (Mosquitto's plugin renames
 * but does not fsync). A new file is made readable by its owner only, as Mosquitto does.
 */
import { open, readFile, rename, stat, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import {
  type DynsecData,
  DynsecFileError,
  formatDynsec,
  type LoadResult,
  parseDynsec,
} from "./model.ts";

/** Largest file read (a hostile or mistaken path must not take the broker's memory). */
export const MAX_FILE_BYTES = 256 * 1024 * 1024;

/**
 * Reads and parses `file`, returning its text too. Throws `DynsecFileError` naming the file and
 * the reason.
 */
export async function readDynsecFile(file: string): Promise<LoadResult & { text: string }> {
  let text: string;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new DynsecFileError(file, "not a regular file");
    if (st.size > MAX_FILE_BYTES) {
      throw new DynsecFileError(file, `larger than ${MAX_FILE_BYTES} bytes`);
    }
    text = await readFile(file, "utf8");
  } catch (e) {
    if (e instanceof DynsecFileError) throw e;
    const code = (e as { code?: string }).code;
    const why = code === "ENOENT"
      ? "no such file (create one with `mosquitto_ctrl dynsec init FILE admin`)"
      : code === "EACCES"
      ? "permission denied"
      : String((e as Error).message ?? e);
    throw new DynsecFileError(file, `cannot read the file: ${why}`);
  }
  try {
    return { ...parseDynsec(text), text };
  } catch (e) {
    throw new DynsecFileError(file, (e as Error).message);
  }
}

/** Writes `data` to `file` atomically and durably (see the module comment); returns the text. */
export async function saveDynsecFile(file: string, data: DynsecData): Promise<string> {
  const text = formatDynsec(data);
  const tmp = `${file}.new`;
  let mode = 0o600;
  try {
    mode = (await stat(file)).mode & 0o777;
  } catch {
    // A new file: owner only.
  }
  const fh = await open(tmp, "w", mode);
  try {
    await fh.writeFile(text, "utf8");
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fh.close();
  await rename(tmp, file);
  await syncDir(dirname(file));
  return text;
}

/** fsync a directory so a rename in it is durable; skipped where the platform cannot. */
async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } catch {
    // Some platforms and runtimes cannot open or fsync a directory; the rename still happened.
  } finally {
    await fh?.close().catch(() => {});
  }
}
