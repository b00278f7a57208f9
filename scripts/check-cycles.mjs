// No import cycles in src/: reads every import and re-export of src/**/*.ts that is there at run
// time (`import type` and imports of types only are erased by the compiler and left out) and
// fails, printing each cycle as a chain of files, when a module imports one that imports it back.
// `--types` counts imports of types too (`npm run check` runs it so): no module knows the types of
// one that knows its own, either.
// Usage: node scripts/check-cycles.mjs [--types]
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const withTypes = process.argv.includes("--types");

/** Every .ts file under `dir`. */
function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

// `import … from "x"`, `export … from "x"` (over several lines too) and `import "x"`, at the
// start of a line.
const STATEMENT = /^[ \t]*(import|export)\s+(type\s+)?([^;]*?)\s*from\s*["']([^"']+)["']/gm;
const BARE = /^[ \t]*import\s+["']([^"']+)["']/gm;

/** Whether an import clause brings in a value (not only types). */
function bringsValue(clause) {
  const braces = clause.match(/\{([\s\S]*)\}/);
  const outside = clause.replace(/\{[\s\S]*\}/, "").replace(/,/g, " ").trim();
  // A default import or `* as ns` is a value.
  if (outside !== "") return true;
  if (!braces) return false;
  const names = braces[1].split(",").map((s) => s.trim()).filter(Boolean);
  // `export {}` / `import {}` bring nothing; otherwise a name without `type` is a value.
  return names.some((n) => !n.startsWith("type "));
}

/** The run-time (or, with --types, every) import of each file: file → files of src/ it imports. */
function graph(files) {
  const g = new Map();
  for (const f of files) {
    const text = readFileSync(f, "utf8");
    const deps = new Set();
    const add = (spec) => {
      if (!spec.startsWith(".")) return;
      const target = resolve(dirname(f), spec);
      if (g.has(target) || files.includes(target)) deps.add(target);
    };
    for (const m of text.matchAll(STATEMENT)) {
      const [, , typeOnly, clause, spec] = m;
      if (!withTypes && (typeOnly || !bringsValue(clause))) continue;
      add(spec);
    }
    for (const m of text.matchAll(BARE)) add(m[1]);
    g.set(f, deps);
  }
  return g;
}

/** Strongly connected components of more than one file (Tarjan), or a file importing itself. */
function cycles(g) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const out = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || g.get(v)?.has(v)) out.push(comp);
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** One loop through `comp`, as a chain of files that import each other in turn. */
function loop(g, comp) {
  const inComp = new Set(comp);
  const start = comp.sort()[0];
  // Breadth-first from start's imports back to start, inside the component.
  const prev = new Map();
  const queue = [...g.get(start)].filter((w) => inComp.has(w));
  for (const w of queue) prev.set(w, start);
  while (queue.length) {
    const v = queue.shift();
    if (v === start) break;
    for (const w of g.get(v)) {
      if (inComp.has(w) && !prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  const chain = [start];
  for (let v = prev.get(start); v !== start; v = prev.get(v)) chain.push(v);
  chain.push(start);
  return chain.reverse();
}

const files = walk(join(root, "src")).map((f) => resolve(f));
const g = graph(files);
const found = cycles(g);
const name = (f) => relative(root, f);
const kind = withTypes ? "import (types included)" : "run-time import";
if (found.length === 0) {
  console.log(`check-cycles: no ${kind} cycle among ${files.length} files of src/`);
  process.exit(0);
}
for (const comp of found) {
  console.error(`check-cycles: ${comp.length} files import each other (${kind}):`);
  console.error(`  ${loop(g, comp).map(name).join("\n    -> ")}`);
  if (comp.length > 2) console.error(`  all of them: ${comp.map(name).sort().join(", ")}`);
}
process.exit(1);
