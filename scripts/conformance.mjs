// The conformance ids cited in src/, wasm/assembly/ and tests/: every `[MQTT-x.y.z-n]` (with its version mark,
// ` v3.1.1` or ` v5`, where it has one) and the code files and test names that carry it.
//
// MQTT 3.1.1 and 5.0 number their normative statements independently, so one id can name
// different rules (`[MQTT-3.1.2-24]` is the keep-alive check in 3.1.1, the Maximum Packet Size in
// 5.0) or exist in one version only. The tables below say which ids are known to differ or to be
// one version's only; `--check` fails when such an id is cited without the version, or with the
// version it does not exist in. An id in neither table is taken to mean the same in both.
//
// Usage: node scripts/conformance.mjs [--check] [--json]
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** `[from, to]` of statement numbers in a section ("3.1.2"): inclusive. */
const range = (section, from, to) =>
  Array.from({ length: to - from + 1 }, (_, i) => `${section}-${from + i}`);

/**
 * Ids whose number names different statements in 3.1.1 and 5.0 (the sections were renumbered
 * when 5.0 added rules): cited, they must say which version they mean.
 */
const DIFFERS = new Set([
  // 3.1.1: header flags; 5.0: properties.
  ...range("2.2.2", 1, 2),
  // CONNECT flags: 3.1.1 Clean Session / stored messages; 5.0 Clean Start / the will.
  ...range("3.1.2", 4, 7),
  // The will, user name and password flags: 3.1.1 has two more will rules (-11, -12), so its
  // -13 is 5.0's -11 and so on; then 3.1.1: user name flag, client PINGREQ, keep-alive; 5.0:
  // keep-alive, session expiry, Maximum Packet Size.
  ...range("3.1.2", 11, 24),
  // 3.1.1: empty client id rules; 5.0: assigned ids, will delay, will payload.
  ...range("3.1.3", 7, 9),
  "3.1.3-11",
  // 3.1.1: take-over is -2; 5.0 inserts authentication at -2, take-over is -3.
  ...range("3.1.4", 2, 5),
  // CONNACK: 5.0 adds the reserved-bits rule first, shifting the Session Present rules.
  ...range("3.2.2", 1, 6),
  // 3.1.1: retained on new subscriptions and its RETAIN flag; 5.0: empty payloads, Retain
  // Handling, Retain As Published.
  ...range("3.3.1", 6, 12),
  // 3.1.1: at least one filter, reserved bits; 5.0: No Local and shared subscriptions.
  ...range("3.8.3", 3, 4),
  // QoS 1/2 flows: 5.0 splits each 3.1.1 statement into several.
  "4.3.2-2",
  ...range("4.3.3", 1, 2),
]);

/** Ids that exist in MQTT 5.0 only. */
const V5_ONLY = new Set([
  ...range("1.5.4", 1, 3),
  "1.5.5-1",
  "1.5.7-1",
  "2.2.1-3",
  ...range("3.1.2", 25, 29),
  ...range("3.2.2", 7, 22),
  ...range("3.3.1", 13, 13),
  ...range("3.3.2", 4, 20),
  ...range("3.3.4", 2, 11),
  "3.8.3-5",
  ...range("3.14.2", 1, 2),
  ...range("3.15.1", 1, 1),
  ...range("4.3.2", 3, 5),
  ...range("4.3.3", 3, 13),
  ...range("4.8.2", 1, 6),
  ...range("4.12.0", 1, 7),
  ...range("4.12.1", 1, 2),
  ...range("4.13.1", 1, 2),
  ...range("4.13.2", 1, 2),
]);

/** Ids that exist in MQTT 3.1.1 only. */
const V311_ONLY = new Set([...range("1.5.3", 1, 3), "2.3.1-1", "2.3.1-2", "4.8.0-1"]);

/** Every .ts file under `dir`. */
function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith(".ts") && !name.endsWith(".generated.ts")) out.push(p);
  }
  return out;
}

const ID = /\[MQTT-(\d+(?:\.\d+)*-\d+)( v3\.1\.1| v5)?\]/g;
// A test's name: the first string argument of test(…) / it(…), on the line where it starts.
const TEST = /^\s*(?:test|it)\(\s*(["'`])((?:\\.|(?!\1).)*)\1/;

/** id → { marks: Set, code: Set<file>, tests: Set<name>, uses: [{file, line, mark}] } */
const ids = new Map();
const entry = (id) => {
  let e = ids.get(id);
  if (!e) ids.set(id, e = { code: new Set(), tests: new Set(), uses: [] });
  return e;
};

for (const dir of ["src", "wasm/assembly", "tests"]) {
  for (const file of walk(join(root, dir))) {
    const rel = relative(root, file);
    const lines = readFileSync(file, "utf8").split("\n");
    lines.forEach((text, i) => {
      const name = dir === "tests" ? text.match(TEST)?.[2] : undefined;
      for (const m of text.matchAll(ID)) {
        const e = entry(m[1]);
        const mark = m[2]?.trim() ?? "";
        e.uses.push({ file: rel, line: i + 1, mark });
        if (name !== undefined) e.tests.add(name);
        else if (dir !== "tests") e.code.add(rel);
      }
    });
  }
}

/** What is wrong with a citation of `id` marked `mark` ("" / "v3.1.1" / "v5"), or null. */
function problem(id, mark) {
  if (V5_ONLY.has(id) && mark !== "v5") {
    return mark ? `exists in MQTT 5.0 only, marked ${mark}` : "exists in MQTT 5.0 only: mark it v5";
  }
  if (V311_ONLY.has(id) && mark !== "v3.1.1") {
    return mark
      ? `exists in MQTT 3.1.1 only, marked ${mark}`
      : "exists in MQTT 3.1.1 only: mark it v3.1.1";
  }
  if (DIFFERS.has(id) && !mark) return "means different things in 3.1.1 and 5.0: mark the version";
  return null;
}

const sorted = [...ids.keys()].sort((a, b) => {
  const pa = a.split(/[.-]/).map(Number), pb = b.split(/[.-]/).map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    if ((pa[i] ?? -1) !== (pb[i] ?? -1)) return (pa[i] ?? -1) - (pb[i] ?? -1);
  }
  return 0;
});

const problems = [];
for (const id of sorted) {
  for (const u of ids.get(id).uses) {
    const p = problem(id, u.mark);
    if (p) problems.push(`${u.file}:${u.line}: [MQTT-${id}${u.mark ? " " + u.mark : ""}] ${p}`);
  }
}

if (process.argv.includes("--json")) {
  const out = {};
  for (const id of sorted) {
    const e = ids.get(id);
    out[id] = {
      versions: V5_ONLY.has(id)
        ? "5.0"
        : V311_ONLY.has(id)
        ? "3.1.1"
        : DIFFERS.has(id)
        ? "differs"
        : "both",
      code: [...e.code].sort(),
      tests: [...e.tests].sort(),
    };
  }
  console.log(JSON.stringify({ ids: out, problems }, null, 2));
} else if (!process.argv.includes("--check")) {
  for (const id of sorted) {
    const e = ids.get(id);
    const kind = V5_ONLY.has(id)
      ? " (5.0 only)"
      : V311_ONLY.has(id)
      ? " (3.1.1 only)"
      : DIFFERS.has(id)
      ? " (differs)"
      : "";
    console.log(`MQTT-${id}${kind}`);
    console.log(`  code:  ${[...e.code].sort().join(", ") || "-"}`);
    for (const t of [...e.tests].sort()) console.log(`  test:  ${t}`);
    if (e.tests.size === 0) console.log("  test:  -");
  }
}
if (problems.length) {
  for (const p of problems) console.error(p);
  console.error(`conformance: ${problems.length} citations to mark (see scripts/conformance.mjs)`);
  if (process.argv.includes("--check")) process.exit(1);
} else if (process.argv.includes("--check")) {
  console.log(`conformance: ${ids.size} ids cited, each marked where the versions differ`);
}
