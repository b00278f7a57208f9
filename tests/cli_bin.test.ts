/**
 * The `midge` command of a checkout (package.json "bin", what `npx midge` runs): it starts
 * src/main.ts with the installed Bun, passes arguments and the exit code through.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;

test("package.json names scripts/midge.mjs as the midge command, and it runs src/main.ts", () => {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  assert.deepEqual(pkg.bin, { midge: "scripts/midge.mjs" });
  const launcher = join(root, pkg.bin.midge);
  assert.match(readFileSync(launcher, "utf8"), /^#!\/usr\/bin\/env node\n/);
  const v = spawnSync("node", [launcher, "version"], { encoding: "utf8" });
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stdout, /^midge \d+\.\d+\.\d+/);
  const bad = spawnSync("node", [launcher, "no-such-command"], { encoding: "utf8" });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /unknown command "no-such-command"/);
});
