// The conformance ids cited in src/, wasm/assembly/ and tests/: every `[MQTT-x.y.z-n]` (with its version mark,
// ` v3.1.1` or ` v5`, where it has one) and the code files and test names that carry it.
//
// MQTT 3.1.1 and 5.0 number their normative statements independently, so one id can name
// different rules (`[MQTT-3.1.2-24]` is the keep-alive check in 3.1.1, the Maximum Packet Size in
// 5.0) or exist in one version only. The tables below list every statement of each version and
// the ids that mean different things in the two; `--check` fails when a cited id exists in
// neither, is marked with a version it does not exist in, or is unmarked where the versions
// differ or only one has it.
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
 * Every numbered normative statement of each version, checked against the specifications' own
 * text: MQTT 3.1.1 (OASIS Standard, 29 October 2014) and MQTT 5.0 (OASIS Standard, 7 March 2019).
 * Section by section: `range(section, first, last)`.
 */
const V311 = new Set([
  ...range("1.5.3", 1, 3),
  ...range("2.2.2", 1, 2),
  ...range("2.3.1", 1, 7),
  ...range("3.1.0", 1, 2),
  ...range("3.1.2", 1, 24),
  ...range("3.1.3", 1, 11),
  ...range("3.1.4", 1, 5),
  "3.2.0-1",
  ...range("3.2.2", 1, 6),
  ...range("3.3.1", 1, 12),
  ...range("3.3.2", 1, 3),
  "3.3.4-1",
  ...range("3.3.5", 1, 2),
  "3.6.1-1",
  "3.8.1-1",
  // The specification prints the fourth as "MQTT-3-8.3-4".
  ...range("3.8.3", 1, 4),
  ...range("3.8.4", 1, 6),
  ...range("3.9.3", 1, 2),
  "3.10.1-1",
  ...range("3.10.3", 1, 2),
  ...range("3.10.4", 1, 6),
  "3.12.4-1",
  "3.14.1-1",
  ...range("3.14.4", 1, 3),
  ...range("4.1.0", 1, 2),
  "4.3.1-1",
  ...range("4.3.2", 1, 2),
  ...range("4.3.3", 1, 2),
  "4.4.0-1",
  ...range("4.5.0", 1, 2),
  ...range("4.6.0", 1, 6),
  ...range("4.7.1", 1, 3),
  "4.7.2-1",
  ...range("4.7.3", 1, 4),
  ...range("4.8.0", 1, 2),
  ...range("6.0.0", 1, 4),
  ...range("7.0.0", 1, 2),
  "7.1.1-1",
  "7.1.2-1",
]);

const V5 = new Set([
  ...range("1.5.4", 1, 3),
  "1.5.5-1",
  "1.5.7-1",
  "2.1.3-1",
  ...range("2.2.1", 2, 6),
  "2.2.2-1",
  ...range("3.1.0", 1, 2),
  ...range("3.1.2", 1, 30),
  ...range("3.1.3", 1, 12),
  ...range("3.1.4", 1, 6),
  ...range("3.2.0", 1, 2),
  ...range("3.2.2", 1, 22),
  ...range("3.3.1", 1, 13),
  ...range("3.3.2", 1, 20),
  ...range("3.3.4", 1, 10),
  ...range("3.4.2", 1, 3),
  ...range("3.5.2", 1, 3),
  "3.6.1-1",
  ...range("3.6.2", 1, 3),
  ...range("3.7.2", 1, 3),
  "3.8.1-1",
  ...range("3.8.3", 1, 5),
  ...range("3.8.4", 1, 8),
  ...range("3.9.2", 1, 2),
  ...range("3.9.3", 1, 2),
  "3.10.1-1",
  ...range("3.10.3", 1, 2),
  ...range("3.10.4", 1, 6),
  ...range("3.11.2", 1, 2),
  ...range("3.11.3", 1, 2),
  "3.12.4-1",
  "3.14.0-1",
  "3.14.1-1",
  ...range("3.14.2", 1, 4),
  ...range("3.14.4", 1, 3),
  "3.15.1-1",
  ...range("3.15.2", 1, 3),
  ...range("4.1.0", 1, 2),
  "4.2.0-1",
  "4.3.1-1",
  ...range("4.3.2", 1, 5),
  ...range("4.3.3", 1, 13),
  ...range("4.4.0", 1, 2),
  ...range("4.5.0", 1, 2),
  ...range("4.6.0", 1, 6),
  "4.7.0-1",
  ...range("4.7.1", 1, 2),
  "4.7.2-1",
  ...range("4.7.3", 1, 4),
  ...range("4.8.2", 1, 6),
  ...range("4.9.0", 1, 3),
  ...range("4.12.0", 1, 7),
  ...range("4.12.1", 1, 2),
  "4.13.1-1",
  "4.13.2-1",
  ...range("6.0.0", 1, 4),
]);

/**
 * Ids in both versions whose number names different statements (the sections were renumbered
 * when 5.0 added rules, or 5.0 split one 3.1.1 statement into several): cited, they must say
 * which version they mean. An id in both and not here says the same thing in both.
 */
const DIFFERS = new Set([
  // 3.1.1: reserved header flags; 5.0: a Property Length of zero.
  "2.2.2-1",
  // CONNECT flags: 3.1.1 Clean Session, stored messages, retained messages, the will; 5.0 Clean
  // Start and the will, a statement earlier. (-8 is the will published when the connection
  // closes in both: 3.1.1's -8 also says that it is stored, which is 5.0's -7.)
  ...range("3.1.2", 4, 7),
  "3.1.2-9",
  // The will, user name and password flags: 3.1.1 has two more will rules (-11, -12), so its
  // -13 is 5.0's -11 and so on; then 3.1.1: user name/password, client PINGREQ, keep-alive; 5.0:
  // client PINGREQ, Server Keep Alive, keep-alive, session expiry, Maximum Packet Size.
  ...range("3.1.2", 11, 24),
  // 3.1.1: empty client ids, identifier rejected, will topic, user name; 5.0: assigned ids,
  // 0x85, will delay, will user properties, will topic.
  ...range("3.1.3", 7, 11),
  // 3.1.1: take-over is -2; 5.0 inserts authentication at -2, take-over is -3.
  ...range("3.1.4", 2, 5),
  // CONNACK: 5.0 adds the reserved-bits rule first, shifting the Session Present rules.
  ...range("3.2.2", 1, 6),
  // 3.1.1: retained on new subscriptions and its RETAIN flag; 5.0: empty payloads, Retain
  // Handling, Retain As Published.
  ...range("3.3.1", 6, 12),
  // 3.1.1: wildcards refused, at least one filter, reserved bits; 5.0: at least one filter, No
  // Local, No Local on a shared subscription.
  ...range("3.8.3", 2, 4),
  // 3.1.1: several filters, a return code each, granted QoS; 5.0: Retain Handling 0, several
  // filters, a reason code each.
  ...range("3.8.4", 4, 6),
  // DISCONNECT's sender: 3.1.1 -1 closes and -2 sends nothing more; 5.0 the other way round.
  ...range("3.14.4", 1, 2),
  // 3.1.1: a session lasts as long as its connection; 5.0: it is discarded after its expiry.
  "4.1.0-2",
  // QoS 1/2 flows: 3.1.1's -2 is the receiver's duties, 5.0's -2 the sender's PUBLISH.
  "4.3.2-2",
  "4.3.3-2",
  // Ordered topics: 3.1.1 -5 is the default and -6 the rule; 5.0 the other way round.
  ...range("4.6.0", 5, 6),
  // 3.1.1: -1 no wildcards in topic names (5.0's 4.7.0-1), -2 '#'; 5.0: -1 '#', -2 '+'.
  ...range("4.7.1", 1, 2),
]);

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
  const in311 = V311.has(id), in5 = V5.has(id);
  if (!in311 && !in5) return "no such statement in MQTT 3.1.1 or 5.0";
  if (mark === "v5" && !in5) return "no such statement in MQTT 5.0";
  if (mark === "v3.1.1" && !in311) return "no such statement in MQTT 3.1.1";
  if (mark) return null;
  if (!in311) return "exists in MQTT 5.0 only: mark it v5";
  if (!in5) return "exists in MQTT 3.1.1 only: mark it v3.1.1";
  if (DIFFERS.has(id)) return "means different things in 3.1.1 and 5.0: mark the version";
  return null;
}

/** Which versions have `id`, and whether they mean the same by it. */
function versions(id) {
  if (!V311.has(id)) return V5.has(id) ? "5.0" : "neither";
  if (!V5.has(id)) return "3.1.1";
  return DIFFERS.has(id) ? "differs" : "both";
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
      versions: versions(id),
      code: [...e.code].sort(),
      tests: [...e.tests].sort(),
    };
  }
  console.log(JSON.stringify({ ids: out, problems }, null, 2));
} else if (!process.argv.includes("--check")) {
  for (const id of sorted) {
    const e = ids.get(id);
    const v = versions(id);
    const kind = v === "both" ? "" : v === "differs" ? " (differs)" : ` (${v} only)`;
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
