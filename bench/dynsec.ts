// Dynamic security's cost per check: `Auth.canRead` (a delivery) and `Auth.canPublish` for a
// client holding 2 roles and 2 groups of 2 roles each (the matching ACL in its last role), cached
// per session and topic and uncached (a new topic each time), against no plugin at all (the hot
// path the broker takes then).
// Run: bun bench/dynsec.ts | deno run -A bench/dynsec.ts
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AclHolder, Auth } from "../src/auth/auth.ts";
import { defaults, GLOBAL_KEYS, LISTENER_KEYS } from "../src/config/schema.ts";
import { Logger } from "../src/sys/log.ts";

const dir = mkdtempSync(join(tmpdir(), "midge-dynsec-bench-"));
const file = join(dir, "dynsec.json");
const role = (name: string, n: number, last: string) => ({
  rolename: name,
  acls: [
    ...Array.from({ length: n }, (_, i) => ({
      acltype: "publishClientReceive",
      topic: `${name}/${i}/+/#`,
      allow: true,
    })),
    ...Array.from({ length: n }, (_, i) => ({
      acltype: "publishClientSend",
      topic: `${name}/${i}/%c/#`,
      allow: true,
    })),
    { acltype: "publishClientReceive", topic: last, allow: true },
    { acltype: "publishClientSend", topic: last, allow: true },
  ],
});
const roles = ["r1", "r2", "g1a", "g1b", "g2a", "g2b"];
writeFileSync(
  file,
  JSON.stringify({
    roles: roles.map((r, i) => role(r, 10, i === roles.length - 1 ? "a/b/#" : `${r}/last`)),
    clients: Array.from({ length: 1000 }, (_, i) => ({
      username: `u${i}`,
      roles: [{ rolename: "r1" }, { rolename: "r2" }],
    })),
    groups: [
      {
        groupname: "g1",
        roles: [{ rolename: "g1a" }, { rolename: "g1b" }],
        clients: Array.from({ length: 1000 }, (_, i) => ({ username: `u${i}`, priority: 2 })),
      },
      {
        groupname: "g2",
        roles: [{ rolename: "g2a" }, { rolename: "g2b" }],
        clients: Array.from({ length: 1000 }, (_, i) => ({ username: `u${i}`, priority: 1 })),
      },
    ],
  }),
);
const config = (plugins: { name: string; config_file: string }[]) => ({
  ...defaults(GLOBAL_KEYS),
  file: "<bench>",
  listeners: [defaults(LISTENER_KEYS)],
  bridges: [],
  cluster: null,
  plugins,
});
const quiet = new Logger(["none"]);
const withDynsec = new Auth(config([{ name: "dynamic-security", config_file: file }]), quiet);
await withDynsec.load();
const without = new Auth(config([]), quiet);
await without.load();

const someSessions = (): AclHolder[] =>
  Array.from(
    { length: 1000 },
    (_, i) => ({ clientId: `c${i}`, username: `u${i}` as string | undefined, auth: undefined }),
  );
// A session carries the state of the Auth it was bound by.
const sessions = someSessions();
sessions.forEach((s) => withDynsec.bind(s));
const plainSessions = someSessions();
plainSessions.forEach((s) => without.bind(s));
const topics = Array.from({ length: 100 }, (_, i) => `a/b/${i}`);

function perCheck(auth: Auth, rounds: number, write: boolean, list = sessions): number {
  let ok = 0;
  const t = performance.now();
  for (let r = 0; r < rounds; r++) {
    for (const topic of topics) {
      for (const s of list) {
        if (write ? auth.canPublish(s, topic) : auth.canRead(s, topic)) ok++;
      }
    }
  }
  if (ok !== rounds * topics.length * list.length) throw new Error("not all allowed");
  return (performance.now() - t) * 1e6 / (rounds * topics.length * sessions.length);
}

perCheck(withDynsec, 1, false); // fill the per-session caches
perCheck(withDynsec, 1, true);
console.log(
  `no plugin:          ${
    perCheck(without, 10, false, plainSessions).toFixed(1)
  } ns per delivery check`,
);
console.log(
  `dynsec, cached:     ${perCheck(withDynsec, 10, false).toFixed(0)} ns per delivery check`,
);
for (const write of [false, true]) {
  let k = 0;
  const t = performance.now();
  for (let r = 0; r < 100_000; r++) {
    const s = sessions[r % 1000];
    const topic = `a/b/${r}/x`;
    if (write ? withDynsec.canPublish(s, topic) : withDynsec.canRead(s, topic)) k++;
  }
  if (k !== 100_000) throw new Error("not all allowed");
  console.log(
    `dynsec, uncached ${write ? "write" : "read "}: ${
      ((performance.now() - t) * 1e3 / 100_000).toFixed(2)
    } µs per check (6 roles, 66 ACLs of its type scanned)`,
  );
}
rmSync(dir, { recursive: true, force: true });
