/** Reading the files auth links use (password file, ACL file, keys), with errors naming the file. */
import { readFile } from "node:fs/promises";
import type { FileProblem } from "./password.ts";

/** A file that cannot be used: names the file and every line at fault. */
export class AuthFileError extends Error {
  constructor(readonly file: string, readonly problems: FileProblem[]) {
    super(
      problems.map((p) => p.line > 0 ? `${file}:${p.line}: ${p.message}` : `${file}: ${p.message}`)
        .join("\n"),
    );
    this.name = "AuthFileError";
  }
}

/** The text of `path`; an `AuthFileError` naming it when it cannot be read. */
export async function readAuthFile(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new AuthFileError(path, [{ line: 0, message: `cannot read the file (${code ?? e})` }]);
  }
}
