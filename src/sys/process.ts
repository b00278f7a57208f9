/**
 * The process around the broker, as Mosquitto manages it: the pid file (`pid_file`, written at
 * start and removed at exit) and dropping root privileges after the listeners are bound (`user`).
 */
import process from "node:process";
import { readFileSync, unlinkSync, writeFileSync } from "node:fs";
import type { Logger } from "./log.ts";

/** Writes the process id to `path` (one line). Throws with the path on failure. */
export function writePidFile(path: string): void {
  try {
    writeFileSync(path, `${process.pid}\n`);
  } catch (e) {
    throw new Error(`pid_file: cannot write ${path}: ${(e as { code?: string }).code ?? e}`);
  }
}

/** Removes the pid file if it still holds this process's id. */
export function removePidFile(path: string): void {
  try {
    if (readFileSync(path, "utf8").trim() === String(process.pid)) unlinkSync(path);
  } catch {
    // Already gone, or not ours to remove.
  }
}

/** The uid and gid of `name` from /etc/passwd, or null when there is no such user. */
export function lookupUser(
  name: string,
  passwd = "/etc/passwd",
): { uid: number; gid: number } | null {
  let text: string;
  try {
    text = readFileSync(passwd, "utf8");
  } catch {
    return null;
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f.length >= 4 && /^\d+$/.test(f[2]) && /^\d+$/.test(f[3])) {
      return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  }
  return null;
}

/**
 * Mosquitto's `user`: when running as root, switch to `user` (its group first). As Mosquitto,
 * a missing "mosquitto" user falls back to "nobody"; any other missing user is an error. Does
 * nothing when not root or when `user` is "". Throws when the switch is needed but fails.
 */
export function dropPrivileges(user: string, log: Logger): void {
  if (!user || typeof process.getuid !== "function" || process.getuid() !== 0) return;
  let name = user;
  let ids = lookupUser(name);
  if (!ids && name === "mosquitto") {
    log.warning(
      `Unable to drop privileges to 'mosquitto' because this user does not exist. Trying 'nobody' instead.`,
    );
    name = "nobody";
    ids = lookupUser(name);
  }
  if (!ids) throw new Error(`user: no user ${JSON.stringify(name)} to switch to`);
  const p = process as unknown as {
    setgid?: (id: number) => void;
    setuid?: (id: number) => void;
    setgroups?: (ids: number[]) => void;
  };
  if (typeof p.setuid !== "function" || typeof p.setgid !== "function") {
    throw new Error(`user: this runtime cannot switch users; start the broker as ${name}`);
  }
  p.setgroups?.([ids.gid]);
  p.setgid(ids.gid);
  p.setuid(ids.uid);
  log.notice(`Dropped privileges to user ${name} (uid ${ids.uid}, gid ${ids.gid}).`);
}
