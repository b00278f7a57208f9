/**
 * The test command on a fresh machine: scripts/provision.mjs decides what to install (as root
 * with apt-get) or what to report (otherwise), with the machine replaced by fakes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PACKAGES, provision } from "../scripts/provision.mjs";

/** A machine where `absent` packages are missing until a fake apt-get installs them. */
function machine(absent: string[], opts: { isRoot: boolean; hasApt: boolean; aptFails?: boolean }) {
  const installed = new Set(PACKAGES.map(([name]) => name).filter((n) => !absent.includes(n)));
  const calls: string[][] = [];
  const lines: string[] = [];
  const env = {
    packages: PACKAGES.map(([name]): [string, () => boolean] => [name, () => installed.has(name)]),
    isRoot: opts.isRoot,
    hasApt: opts.hasApt,
    exec(cmd: string, args: string[]): [boolean, string] {
      calls.push([cmd, ...args]);
      if (opts.aptFails) return [false, "E: Unable to locate package chromium"];
      if (args[0] === "install") { for (const p of args.slice(3)) installed.add(p); }
      return [true, ""];
    },
    log: (line: string) => {
      lines.push(line);
    },
  };
  return { env, calls, lines };
}

test("the packages provisioned are the ones the tests use", () => {
  assert.deepEqual(PACKAGES.map(([name]) => name).sort(), [
    "argon2",
    "chromium",
    "mosquitto",
    "mosquitto-clients",
    "nats-server",
    "openssl",
    "python3-paho-mqtt",
  ]);
});

test("nothing missing: nothing run, nothing printed", () => {
  const m = machine([], { isRoot: true, hasApt: true });
  assert.deepEqual(provision(m.env), []);
  assert.deepEqual(m.calls, []);
  assert.deepEqual(m.lines, []);
});

test("as root with apt-get: one line, apt-get update once, one install of what is missing", () => {
  const m = machine(["argon2", "chromium"], { isRoot: true, hasApt: true });
  assert.deepEqual(provision(m.env), []);
  assert.deepEqual(m.lines, ["provision: installing argon2 chromium (apt-get)"]);
  assert.deepEqual(m.calls, [
    ["apt-get", "update", "-qq"],
    ["apt-get", "install", "-y", "-qq", "argon2", "chromium"],
  ]);
});

test("as root when apt-get fails: the packages still missing, said in a second line", () => {
  const m = machine(["chromium"], { isRoot: true, hasApt: true, aptFails: true });
  assert.deepEqual(provision(m.env), ["chromium"]);
  assert.equal(m.lines.length, 2);
  assert.match(m.lines[1], /^provision: could not install chromium: E: Unable to locate/);
  assert.equal(m.calls.length, 1, "no install after a failed update");
});

test("not root, or no apt-get: one line naming what is missing and how to install it; nothing run", () => {
  let m = machine(["argon2", "nats-server"], { isRoot: false, hasApt: true });
  assert.deepEqual(provision(m.env), ["argon2", "nats-server"]);
  assert.deepEqual(m.lines, [
    "provision: missing argon2 nats-server; the tests that need them will fail (sudo apt-get install argon2 nats-server)",
  ]);
  assert.deepEqual(m.calls, []);
  m = machine(["openssl"], { isRoot: true, hasApt: false });
  assert.deepEqual(provision(m.env), ["openssl"]);
  assert.equal(m.lines.length, 1);
  assert.match(
    m.lines[0],
    /^provision: missing openssl; .*install the Debian\/Ubuntu packages openssl/,
  );
  assert.deepEqual(m.calls, []);
});

test("on this machine every package is present (the suite provisioned it)", () => {
  const missing = PACKAGES.filter(([, present]) => !present()).map(([name]) => name);
  assert.deepEqual(missing, []);
});
