// The auth chain's cost per check: `Auth.canRead` (a delivery) and `Auth.canPublish` (a
// PUBLISH) for a session without auth and for one whose JWT `acl` claim is its grants (answers
// remembered per topic). Run `node scripts/build-wasm.mjs`, then `bun bench/auth_checks.ts` or
// `deno run -A bench/auth_checks.ts`. Times are CPU time of the process (the machine is shared),
// the last of 3 rounds of 5 M calls.
import process from "node:process";
import { type AclHolder, Auth } from "../src/auth/auth.ts";
import { compileAclClaim } from "../src/auth/jwt_acl.ts";
import { defaults, GLOBAL_KEYS, LISTENER_KEYS } from "../src/config/schema.ts";
import { Logger } from "../src/sys/log.ts";

const config = (over: object) => ({
  ...defaults(GLOBAL_KEYS),
  file: "<bench>",
  listeners: [defaults(LISTENER_KEYS)],
  bridges: [],
  cluster: null,
  ...over,
});
const quiet = new Logger(["none"]);
const withJwt = new Auth(config({ auth_chain: ["jwt"], jwt_secret: "x".repeat(40) }), quiet);
await withJwt.load();
const without = new Auth(config({}), quiet);
await without.load();

const topics = Array.from({ length: 8 }, (_, i) => `bench/in/${i}`);
const session = (id: string): AclHolder => ({ clientId: id, username: id, auth: undefined });
const grants = (action: "publish" | "subscribe", topic: string, id: string) =>
  compileAclClaim([{ permission: "allow", action, topic }], { clientId: id, username: id });

const reader = session("s0");
withJwt.bind(reader, undefined, {
  verdict: "allow",
  grants: grants("subscribe", "bench/in/+", "s0"),
});
const writer = session("p3");
withJwt.bind(writer, undefined, {
  verdict: "allow",
  grants: grants("publish", "bench/in/3", "p3"),
});
const plain = session("c");
without.bind(plain);

function perCall(label: string, f: (i: number) => unknown): void {
  let ns = 0;
  for (let round = 0; round < 3; round++) {
    const n = 5_000_000;
    let allowed = 0;
    const t = process.cpuUsage();
    for (let i = 0; i < n; i++) if (f(i) === true) allowed++;
    const used = process.cpuUsage(t);
    ns = (used.user + used.system) * 1e3 / n;
    if (allowed !== n) throw new Error(`${label}: ${n - allowed} refused`);
  }
  console.log(`${label.padEnd(44)} ${ns.toFixed(1)} ns`);
}

perCall("read, no auth (8 topics in turn)", (i) => without.canRead(plain, topics[i & 7]));
perCall("read, jwt + acl claim (8 topics in turn)", (i) => withJwt.canRead(reader, topics[i & 7]));
perCall("write, no auth (one topic)", () => without.canPublish(plain, topics[3], 0, false));
perCall(
  "write, jwt + acl claim (one topic)",
  () => withJwt.canPublish(writer, topics[3], 0, false),
);
