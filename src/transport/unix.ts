/** Unix socket paths: a socket file left by a process that is gone is replaced, a live one not. */
import { lstatSync, unlinkSync } from "node:fs";
import { connect } from "node:net";

/**
 * Makes `path` free for a new Unix socket listener: removes a socket file nobody listens on
 * (left by a crash), refuses one another server still answers on. Anything else at the path
 * (a regular file, a directory) is left alone, and binding then fails.
 */
export async function prepareUnixPath(path: string): Promise<void> {
  let isSocket = false;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) return;
  const live = await new Promise<boolean>((resolve) => {
    const s = connect({ path });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
  if (live) throw new Error(`${path} is in use by another server`);
  removeSocketFile(path);
}

/** Remove a Unix socket file (never a regular file); nothing happens when it is gone. */
export function removeSocketFile(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // absent: nothing to do
  }
}
