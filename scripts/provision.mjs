// What the test suite needs from the machine, as Debian packages: each with a probe that says
// whether what the tests use is there. `npm test` (scripts/test.mjs) calls `provision()` first:
// as root with apt-get it installs what is missing (apt-get update once, then one install) and
// prints one line saying what; otherwise it prints one line saying what is missing and how to
// install it, and the tests that need it fail.
// Usage on its own: node scripts/provision.mjs
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** Whether `cmd` is on PATH. */
function onPath(cmd) {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/**
 * The Debian packages the tests use, each with the probe the tests' own lookups agree with.
 * @type {[string, () => boolean][]}
 */
export const PACKAGES = [
  ["mosquitto", () => existsSync("/usr/sbin/mosquitto") || existsSync("/usr/bin/mosquitto")],
  ["mosquitto-clients", () => onPath("mosquitto_pub") && onPath("mosquitto_sub")],
  ["argon2", () => onPath("argon2")],
  [
    "python3-paho-mqtt",
    () =>
      spawnSync("/usr/bin/python3", ["-c", "import paho.mqtt"], { stdio: "ignore" }).status === 0,
  ],
  ["chromium", () => existsSync("/usr/bin/chromium")],
  ["openssl", () => onPath("openssl")],
  ["nats-server", () => onPath("nats-server")],
];

/**
 * Runs a command quietly; returns [ok, the last line of its error output].
 * @param {string} cmd
 * @param {string[]} args
 * @returns {[boolean, string]}
 */
function run(cmd, args) {
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  const err = `${r.stderr ?? ""}${r.error ? String(r.error) : ""}`.trim().split("\n").pop() ?? "";
  return [r.status === 0, err];
}

/**
 * Installs the missing packages when it can, and says in one line what it did or what is
 * missing. Everything the machine is asked goes through `env` (the real machine by default), so
 * the decisions can be tested. Returns the packages still missing.
 * @param {{
 *   packages?: [string, () => boolean][],
 *   isRoot?: boolean,
 *   hasApt?: boolean,
 *   exec?: (cmd: string, args: string[]) => [boolean, string],
 *   log?: (line: string) => void,
 * }} env
 * @returns {string[]}
 */
export function provision(env = {}) {
  const {
    packages = PACKAGES,
    isRoot = typeof process.getuid === "function" && process.getuid() === 0,
    hasApt = onPath("apt-get"),
    exec = run,
    log = (line) => console.log(line),
  } = env;
  const missing = packages.filter(([, present]) => !present()).map(([name]) => name);
  if (missing.length === 0) return [];
  const list = missing.join(" ");
  if (!isRoot || !hasApt) {
    const how = hasApt
      ? `sudo apt-get install ${list}`
      : `install the Debian/Ubuntu packages ${list} or their equivalents`;
    log(`provision: missing ${list}; the tests that need them will fail (${how})`);
    return missing;
  }
  log(`provision: installing ${list} (apt-get)`);
  const [updated, updateErr] = exec("apt-get", ["update", "-qq"]);
  const [installed, installErr] = updated
    ? exec("apt-get", ["install", "-y", "-qq", ...missing])
    : [false, updateErr];
  const still = packages.filter(([name, present]) => missing.includes(name) && !present())
    .map(([name]) => name);
  if (!installed || still.length > 0) {
    log(
      `provision: could not install ${
        still.join(" ") || list
      }: ${installErr}; the tests that need them will fail`,
    );
  }
  return still;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exitCode = provision().length > 0 ? 1 : 0;
}
