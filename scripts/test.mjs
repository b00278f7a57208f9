// The project's test command: provisions the Debian packages the tests use (scripts/provision.mjs),
// builds the WASM, runs the static checks (`npm run check`: deno check, lint, fmt; one test in
// the count) when the whole suite runs, then every tests/*.test.ts under `deno test` and under
// `bun test`, and prints one closing line for all of it:
//   tests: N passed, N failed, N skipped
// Exits non-zero when any test or the static checks failed, or a runtime could not run the suite.
// Usage: node scripts/test.mjs [deno|bun] [file filter...]
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { provision } from "./provision.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const args = process.argv.slice(2);
const runtimes = ["deno", "bun"].filter((r) =>
  args.length === 0 || !["deno", "bun"].some((x) => args.includes(x)) || args.includes(r)
);
const filters = args.filter((a) => a !== "deno" && a !== "bun");

provision();

const build = spawnSync("node", [join(root, "scripts", "build-wasm.mjs")], { stdio: "inherit" });
if (build.status !== 0) {
  console.log("tests: 0 passed, 1 failed, 0 skipped");
  process.exit(1);
}

const totals = { passed: 0, failed: 0, skipped: 0 };

// The static checks of `npm run check` (the WASM is built above), counted as one test. Only for
// the whole suite: a run of chosen test files is a developer's quick loop.
if (filters.length === 0) {
  const started = Date.now();
  // The deno and node steps of package.json's "check" script (the import-cycle check among
  // them), so the two cannot drift apart.
  const steps = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts.check
    .split("&&").map((c) => c.trim().split(/\s+/)).filter(([cmd]) =>
      cmd === "deno" || cmd === "node"
    );
  let failed = null;
  for (const step of steps) {
    const [cmd, ...rest] = step;
    const r = spawnSync(cmd === "deno" ? bin("deno") : "node", rest, {
      cwd: root,
      encoding: "utf8",
    });
    if (r.status !== 0) {
      failed = step;
      process.stdout.write(`${r.stdout}${r.stderr}`);
      break;
    }
  }
  const took = ((Date.now() - started) / 1000).toFixed(1);
  if (failed) {
    totals.failed++;
    console.log(`static checks: ${failed.join(" ")} failed (${took} s)`);
  } else {
    totals.passed++;
    console.log(
      `static checks: ${steps.map((a) => a.slice(0, 2).join(" ")).join(", ")} passed (${took} s)`,
    );
  }
}

// The compiled executable (tests/compiled_binary.test.ts) is built once here, for this machine's
// platform, rather than once per runtime; the test builds it itself when run another way.
if (filters.length === 0 || filters.some((f) => "tests/compiled_binary.test.ts".includes(f))) {
  const started = Date.now();
  const exe = spawnSync("node", [join(root, "scripts", "compile.mjs"), "host"], {
    encoding: "utf8",
  });
  if (exe.status === 0) {
    process.env.MIDGE_TEST_BINARY = ((l) => l.slice(0, l.lastIndexOf(": ")))(
      exe.stdout.trim().split("\n").pop(),
    );
    console.log(`compiled ${process.env.MIDGE_TEST_BINARY} (${Date.now() - started} ms)`);
  } else console.log(`compile failed (the compiled-binary test will say why):\n${exe.stderr}`);
}

const outDir = join(root, ".test-out");
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
const targets = filters.length ? filters : ["tests/"];
let broken = false;

for (const rt of runtimes) {
  const xml = join(outDir, `${rt}.xml`);
  const started = Date.now();
  console.log(`\n=== ${rt} ===`);
  const cmd = rt === "deno"
    ? [bin("deno"), ["test", "-A", "--no-check", `--junit-path=${xml}`, ...targets]]
    : [bin("bun"), [
      "test",
      "--timeout",
      "60000",
      "--reporter=junit",
      `--reporter-outfile=${xml}`,
      ...targets.map((t) => t.startsWith(".") || t.startsWith("/") ? t : `./${t}`),
    ]];
  const res = spawnSync(cmd[0], cmd[1], {
    stdio: "inherit",
    cwd: root,
    env: { ...process.env, MIDGE_TEST_RUNTIME: rt },
  });
  let counts;
  try {
    counts = countJunit(readFileSync(xml, "utf8"));
  } catch {
    counts = { passed: 0, failed: 1, skipped: 0 };
    console.log(`${rt}: no test report was written`);
  }
  if (res.status !== 0 && counts.failed === 0) {
    // The runner failed without a failing test case (a load error, an uncaught exception).
    counts.failed += 1;
    broken = true;
    console.log(`${rt}: the runner exited with status ${res.status} outside any test`);
  }
  console.log(
    `${rt}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped (${
      ((Date.now() - started) / 1000).toFixed(1)
    } s)`,
  );
  for (const k of Object.keys(totals)) totals[k] += counts[k];
}

console.log(`tests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(totals.failed > 0 || broken ? 1 : 0);

/** Counts leaf test cases in a JUnit report; a case whose name is the parent ("a > b") of another is a group. */
function countJunit(xml) {
  const cases = [];
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (let m; (m = re.exec(xml));) {
    const name = decode((/\bname="([^"]*)"/.exec(m[1]) ?? [])[1] ?? "");
    const cls = decode((/\bclassname="([^"]*)"/.exec(m[1]) ?? [])[1] ?? "");
    const body = m[3] ?? "";
    cases.push({
      name,
      cls,
      failed: /<(failure|error)\b/.test(body),
      skipped: /<skipped\b/.test(body),
    });
  }
  const names = new Set(cases.map((c) => c.name));
  const isGroup = (n) => [...names].some((o) => o !== n && o.startsWith(n + " > "));
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const c of cases) {
    if (isGroup(c.name)) continue;
    if (c.failed) counts.failed++;
    else if (c.skipped) counts.skipped++;
    else counts.passed++;
  }
  return counts;
}
function decode(s) {
  return s.replace(/&gt;/g, ">").replace(/&lt;/g, "<").replace(/&quot;/g, '"').replace(
    /&apos;/g,
    "'",
  ).replace(/&amp;/g, "&");
}
