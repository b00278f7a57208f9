// ACL check cost per delivery: `Auth.canRead` with an acl_file (cached per session and topic,
// and uncached: a new topic each time), and without one (the hot path the broker takes then).
// Run: bun bench/acl.ts | deno run -A bench/acl.ts
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AclHolder, Auth } from "../src/auth/auth.ts";
import { defaults, GLOBAL_KEYS, LISTENER_KEYS } from "../src/config/schema.ts";
import { Logger } from "../src/sys/log.ts";

const dir = mkdtempSync(join(tmpdir(), "midge-acl-bench-"));
const file = join(dir, "acl");
writeFileSync(
  file,
  "topic read public/#\nuser u\ntopic readwrite a/#\ntopic deny a/secret/#\n" +
    "pattern readwrite clients/%c/#\npattern read users/%u/#\n" +
    Array.from({ length: 50 }, (_, i) => `pattern read g${i}/%u/#`).join("\n") + "\n",
);
const config = (acl: string) => ({
  ...defaults(GLOBAL_KEYS),
  file: "<bench>",
  listeners: [defaults(LISTENER_KEYS)],
  acl_file: acl,
  bridges: [],
  cluster: null,
});
const quiet = new Logger(["none"]);
const withAcl = new Auth(config(file), quiet);
await withAcl.load();
const without = new Auth(config(""), quiet);
await without.load();

const someSessions = (): AclHolder[] =>
  Array.from(
    { length: 1000 },
    (_, i) => ({ clientId: `c${i}`, username: "u" as string | undefined, auth: undefined }),
  );
// A session carries the state of the Auth it was bound by.
const sessions = someSessions();
sessions.forEach((s) => withAcl.bind(s));
const plainSessions = someSessions();
plainSessions.forEach((s) => without.bind(s));
const topics = Array.from({ length: 100 }, (_, i) => `a/b/${i}`);

function perCheck(auth: Auth, rounds: number, sessions: AclHolder[]): number {
  let ok = 0;
  const t = performance.now();
  for (let r = 0; r < rounds; r++) {
    for (const topic of topics) {
      for (const s of sessions) if (auth.canRead(s, topic) === true) ok++;
    }
  }
  if (ok === 0) throw new Error("nothing allowed");
  return (performance.now() - t) * 1e6 / (rounds * topics.length * sessions.length);
}

perCheck(withAcl, 1, sessions); // fill the caches
console.log(
  `no acl_file:        ${perCheck(without, 10, plainSessions).toFixed(1)} ns per delivery check`,
);
console.log(
  `acl_file, cached:   ${perCheck(withAcl, 10, sessions).toFixed(0)} ns per delivery check`,
);
let k = 0;
const t = performance.now();
for (let r = 0; r < 20000; r++) if (withAcl.canRead(sessions[r % 1000], `x/${r}/y`) === true) k++;
console.log(
  `acl_file, uncached: ${((performance.now() - t) * 1e3 / 20000).toFixed(2)} µs per check ` +
    `(56 rules, ${k} allowed)`,
);
rmSync(dir, { recursive: true, force: true });
