// Dynamic security (Mosquitto's plugin, built in): the file format (2.0 and 2.1 passwords,
// corrupted files refused with file and reason), ACL evaluation (roles before groups,
// priorities, first match, default access, %c/%u), every `mosquitto_ctrl dynsec` command run
// against Midge and checked by connecting as the clients it made, the commands mosquitto_ctrl
// does not send (modify*, verbose lists, paging), atomic saves, and real Mosquitto loading the
// file Midge saved.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import process from "node:process";
import type { MqttClient } from "mqtt";
import { connect, endAll, freePort, sleep, startBroker, until } from "./helpers/broker.ts";
import type { TestBroker } from "./helpers/broker.ts";
import { loadConfig, parseConfig } from "../src/config/load.ts";
import { assembleBroker } from "../src/assemble.ts";
import { checkFiles } from "../src/cli/check_files.ts";
import { ConsoleState } from "../src/sys/console_api.ts";
import { passwordSignInOf } from "../src/sys/console_auth.ts";
import { DynamicSecurity, DYNSEC_TOPIC, MAX_PENDING } from "../src/auth/dynsec/dynsec.ts";
import { byName, formatDynsec, parseDynsec } from "../src/auth/dynsec/model.ts";
import { COMMANDS } from "../src/auth/dynsec/commands.ts";
import { DynsecAcl, filterCovered, topicMatches } from "../src/auth/dynsec/acl.ts";
import {
  ACCESS_READ,
  ACCESS_SUBSCRIBE,
  ACCESS_UNSUBSCRIBE,
  ACCESS_WRITE,
} from "../src/auth/chain_types.ts";
import { hashPassword } from "../src/auth/password.ts";
import { silentLogger } from "../src/sys/log.ts";

const dir = mkdtempSync(join(tmpdir(), "midge-dynsec-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(dir, `ds${++n}.json`);

const MOSQUITTO = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => existsSync(p));
const PLUGIN = [
  "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
  "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
  "/usr/lib/mosquitto_dynamic_security.so",
].find((p) => existsSync(p));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program without blocking the event loop (the broker under test shares it). */
function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 15000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** `mosquitto_init dynsec init FILE admin PASSWORD`. */
async function init(file: string, user = "admin", pw = "adminpw"): Promise<void> {
  const r = await run("mosquitto_ctrl", ["dynsec", "init", file, user, pw]);
  assert.ok(existsSync(file), `mosquitto_ctrl dynsec init failed: ${r.stderr}`);
}

/** A broker with dynamic security on `file`. */
function withDynsec(file: string, over = {}): Promise<TestBroker> {
  return startBroker({
    allow_anonymous: false,
    plugins: [{ name: "dynamic-security", config_file: file }],
    ...over,
  });
}

/** `mosquitto_ctrl … dynsec ARGS` as admin; stderr without the unencrypted-connection warning. */
async function ctrl(tb: TestBroker, ...args: string[]): Promise<Run> {
  const r = await run("mosquitto_ctrl", [
    "-h",
    "127.0.0.1",
    "-p",
    String(tb.port),
    "-u",
    "admin",
    "-P",
    "adminpw",
    "dynsec",
    ...args,
  ]);
  r.stderr = r.stderr.split("\n").filter((l) =>
    l !== "" && !/without encryption|visible on the network/.test(l)
  ).join("\n");
  return r;
}

/** Runs mosquitto_ctrl and expects it to succeed silently (no error line). */
async function ok(tb: TestBroker, ...args: string[]): Promise<string> {
  const r = await ctrl(tb, ...args);
  assert.equal(r.stderr, "", `mosquitto_ctrl dynsec ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** Connects as `username`; rejects when refused. */
function as(tb: TestBroker, username: string, password: string, opts = {}): Promise<MqttClient> {
  return connect(tb, { username, password, protocolVersion: 5, ...opts });
}

/** Connect and report the refusal's reason code (0 when accepted). */
async function loginCode(tb: TestBroker, username: string, password: string, opts = {}) {
  try {
    const c = await as(tb, username, password, opts);
    await endAll(c);
    return 0;
  } catch (e) {
    return (e as { code?: number }).code ?? -1;
  }
}

/** QoS 1 publish: the v5 PUBACK reason code (0x87 when the ACL denies it). */
async function pubCode(c: MqttClient, topic: string): Promise<number> {
  try {
    const p = await c.publishAsync(topic, "x", { qos: 1 });
    return (p as { reasonCode?: number } | undefined)?.reasonCode ?? 0;
  } catch (e) {
    return (e as { code?: number }).code ?? -1;
  }
}

/** The granted QoS or v5 reason of one subscription. */
async function subCode(c: MqttClient, filter: string): Promise<number> {
  try {
    const g = await c.subscribeAsync(filter, { qos: 1 });
    return g[0].qos;
  } catch (e) {
    // MQTT.js rejects a v5 SUBACK whose reason code is an error.
    const granted = (e as { packet?: { granted?: number[] } }).packet?.granted;
    if (granted) return granted[0];
    throw e;
  }
}

// ---------------------------------------------------------------- file format

test("file: mosquitto_ctrl dynsec init's file is read (textName, 2.0 password) and round-trips", async () => {
  const file = fresh();
  await init(file);
  const { data, warnings } = parseDynsec(readFileSync(file, "utf8"));
  assert.deepEqual(warnings, []);
  const admin = data.clients.get("admin")!;
  assert.equal(admin.textname, "Dynsec admin user", "cJSON reads keys ignoring case");
  assert.equal(admin.password?.kind, "pbkdf2");
  assert.deepEqual(admin.roles, [{ name: "admin", priority: -1 }]);
  assert.equal(data.roles.get("admin")!.acls.length, 8);
  assert.deepEqual(data.defaultACLAccess, {
    publishClientSend: false,
    publishClientReceive: true,
    subscribe: false,
    unsubscribe: true,
  });
  const again = parseDynsec(formatDynsec(data));
  assert.equal(formatDynsec(again.data), formatDynsec(data));
  const saved = JSON.parse(formatDynsec(data));
  assert.equal(saved.clients[0].iterations, 101, "2.0 form kept for a 12-byte salt");
  assert.equal(typeof saved.clients[0].salt, "string");
});

test("file: 2.1 encoded_password ($7$ with a 64-byte salt, argon2id) is read and written back as encoded_password", async () => {
  const pbkdf2 = await hashPassword(new TextEncoder().encode("pw7"), { saltBytes: 64 });
  const argon = await hashPassword(new TextEncoder().encode("pwa"), { kind: "argon2id" });
  const text = JSON.stringify({
    clients: [
      { username: "a", encoded_password: pbkdf2 },
      { username: "b", encoded_password: argon },
    ],
  });
  const file = fresh();
  writeFileSync(file, text);
  const ds = new DynamicSecurity(file, silentLogger);
  await ds.load();
  const login = async (username: string, pw: string) =>
    (await ds.authenticate({
      listener: undefined,
      address: "127.0.0.1",
      clientId: "c",
      username,
      password: new TextEncoder().encode(pw),
      protocolVersion: 5,
    })).verdict;
  assert.equal(await login("a", "pw7"), "allow");
  assert.equal(await login("a", "nope"), "deny");
  assert.equal(await login("b", "pwa"), "allow");
  assert.equal(await login("b", "pw7"), "deny");
  assert.equal(await login("nobody", "x"), "next");
  const out = JSON.parse(formatDynsec(ds.data as never));
  assert.equal(out.clients[0].encoded_password, pbkdf2);
  assert.equal(out.clients[1].encoded_password, argon);
});

test("file: a corrupted file is refused with the file and the reason", async () => {
  const cases: [string, RegExp][] = [
    ['{"clients": [', /not valid JSON/],
    ["[]", /top level is not a JSON object/],
    ['{"clients": {}}', /clients is not an array/],
    [
      '{"clients": [{"username": "u", "password": "AAAA", "salt": "!!", "iterations": 101}]}',
      /clients\[0\] "u": the salt is not valid base64/,
    ],
    [
      '{"clients": [{"username": "u", "password": "AAAA"}]}',
      /password, salt and iterations together/,
    ],
    [
      '{"roles": [{"rolename": "r", "acls": [{"acltype": "publishEverything", "topic": "a"}]}]}',
      /acltype "publishEverything"/,
    ],
    [
      '{"roles": [{"rolename": "r", "acls": [{"acltype": "publishClientSend", "topic": "a/#/b"}]}]}',
      /not a valid topic filter/,
    ],
    ['{"defaultACLAccess": {"subscribe": "yes"}}', /defaultACLAccess.subscribe/],
  ];
  for (const [text, why] of cases) {
    const file = fresh();
    writeFileSync(file, text);
    const ds = new DynamicSecurity(file, silentLogger);
    await assert.rejects(ds.load(), (e: Error) => {
      assert.ok(e.message.startsWith(`${file}: `), e.message);
      assert.match(e.message, why);
      return true;
    });
  }
  await assert.rejects(
    new DynamicSecurity(join(dir, "missing.json"), silentLogger).load(),
    /missing\.json: cannot read the file: no such file/,
  );
  // The broker refuses to start on it.
  const file = fresh();
  writeFileSync(file, "{oops");
  await assert.rejects(withDynsec(file), /not valid JSON/);
});

test("file: duplicates and dangling names (Mosquitto skips them) are warned about, first one kept", () => {
  const { data, warnings } = parseDynsec(JSON.stringify({
    roles: [{ rolename: "r" }, { rolename: "r", textname: "second" }],
    clients: [
      { username: "u", roles: [{ rolename: "r" }, { rolename: "gone" }] },
      { username: "u" },
    ],
    groups: [{ groupname: "g", clients: [{ username: "u", priority: 3 }, { username: "x" }] }],
    anonymousGroup: "nope",
  }));
  assert.equal(data.roles.get("r")!.textname, undefined);
  assert.deepEqual(data.clients.get("u")!.roles, [{ name: "r", priority: -1 }]);
  assert.deepEqual(data.clients.get("u")!.groups, [{ name: "g", priority: 3 }]);
  assert.equal(data.anonymousGroup, undefined);
  assert.equal(warnings.length, 5, warnings.join("\n"));
});

// ---------------------------------------------------------------- ACL evaluation

test("acl: client roles before groups, priorities, first match wins, default access, $CONTROL never by default", () => {
  const { data } = parseDynsec(JSON.stringify({
    defaultACLAccess: { publishClientSend: true, publishClientReceive: false },
    roles: [
      { rolename: "allowA", acls: [{ acltype: "publishClientSend", topic: "a/#", allow: true }] },
      {
        rolename: "denyAB",
        acls: [
          { acltype: "publishClientSend", topic: "a/b", allow: false, priority: 1 },
          { acltype: "publishClientSend", topic: "a/b/c", allow: true, priority: 9 },
        ],
      },
      { rolename: "denyAll", acls: [{ acltype: "publishClientSend", topic: "#", allow: false }] },
    ],
    clients: [
      {
        username: "hi",
        roles: [{ rolename: "allowA", priority: 1 }, { rolename: "denyAB", priority: 5 }],
      },
      {
        username: "lo",
        roles: [{ rolename: "allowA", priority: 5 }, { rolename: "denyAB", priority: 1 }],
      },
      { username: "grp" },
      { username: "mix", roles: [{ rolename: "allowA" }] },
    ],
    groups: [
      {
        groupname: "g1",
        roles: [{ rolename: "denyAll" }],
        clients: [{ username: "grp", priority: 1 }, { username: "mix", priority: 9 }],
      },
      {
        groupname: "g2",
        roles: [{ rolename: "allowA" }],
        clients: [{ username: "grp", priority: 7 }],
      },
    ],
  }));
  const acl = new DynsecAcl(data);
  const w = (u: string | undefined, t: string) =>
    acl.check({ clientId: "c", username: u }, ACCESS_WRITE, t);
  assert.equal(w("hi", "a/b"), "deny", "the higher-priority role decides");
  assert.equal(w("hi", "a/b/c"), "allow", "ACL priority within a role");
  assert.equal(w("hi", "a/x"), "allow");
  assert.equal(w("lo", "a/b"), "allow");
  assert.equal(w("grp", "a/b"), "allow", "group g2 (priority 7) before g1 (priority 1)");
  assert.equal(w("grp", "z"), "deny", "g1's deny-all");
  assert.equal(w("mix", "a/q"), "allow", "the client's own roles before any group");
  assert.equal(w("mix", "q"), "deny");
  assert.equal(w("nobody", "q"), "next", "unknown user: not decided here");
  assert.equal(w(undefined, "q"), "allow", "no anonymous group: default access");
  assert.equal(w(undefined, "$CONTROL/dynamic-security/v1"), "next", "never by default");
  assert.equal(
    acl.check({ clientId: "c", username: undefined }, ACCESS_READ, "q"),
    "next",
    "default deny ends as next",
  );
});

test("acl: subscribeLiteral before patterns, unsubscribe ACLs, wildcard rules and %c/%u", () => {
  const who = { clientId: "dev1", username: "ann" };
  assert.ok(topicMatches("d/%c/#", "d/dev1/x", who));
  assert.ok(!topicMatches("d/%c/#", "d/dev2/x", who));
  assert.ok(topicMatches("u/%u", "u/ann", who));
  assert.ok(!topicMatches("u/%u", "u/ann", { clientId: "x", username: undefined }));
  assert.ok(!topicMatches("#", "$SYS/x", who), "[MQTT-4.7.2-1] # does not match $ topics");
  assert.ok(!topicMatches("%c/#", "$SYS/x", { clientId: "$SYS", username: undefined }));
  assert.ok(!topicMatches("d/%c", "d/a", { clientId: "a/b", username: undefined }));
  assert.ok(filterCovered("a/+", "a/b", who));
  assert.ok(filterCovered("a/+", "a/+", who));
  assert.ok(!filterCovered("a/+", "a/#", who));
  assert.ok(filterCovered("a/#", "a/#", who));
  assert.ok(filterCovered("a/%c/#", "a/dev1/+", who));

  const { data } = parseDynsec(JSON.stringify({
    roles: [{
      rolename: "r",
      acls: [
        { acltype: "subscribePattern", topic: "s/#", allow: true, priority: 5 },
        { acltype: "subscribeLiteral", topic: "s/secret", allow: false },
        { acltype: "unsubscribePattern", topic: "s/keep/#", allow: false },
      ],
    }, {
      rolename: "nowild",
      allowwildcardsubs: false,
      acls: [{ acltype: "subscribePattern", topic: "w/#", allow: true }],
    }],
    clients: [{ username: "ann", roles: [{ rolename: "r" }] }, {
      username: "bo",
      roles: [{ rolename: "nowild" }],
    }],
    defaultACLAccess: { unsubscribe: true },
  }));
  const acl = new DynsecAcl(data);
  const sub = (u: string, f: string) =>
    acl.check({ clientId: "c", username: u }, ACCESS_SUBSCRIBE, f);
  const unsub = (u: string, f: string) =>
    acl.check({ clientId: "c", username: u }, ACCESS_UNSUBSCRIBE, f);
  assert.equal(sub("ann", "s/secret"), "deny", "the literal is looked at before patterns");
  assert.equal(sub("ann", "s/other"), "allow");
  assert.equal(sub("ann", "t/x"), "next");
  assert.equal(unsub("ann", "s/keep/a"), "deny");
  assert.equal(unsub("ann", "s/other"), "allow");
  assert.equal(sub("bo", "w/x"), "allow");
  assert.equal(sub("bo", "w/+"), "deny", "Mosquitto 2.1 allowwildcardsubs = false");
});

// ---------------------------------------------------------------- mosquitto_ctrl against Midge

test("mosquitto_ctrl: every dynsec command against Midge, checked by connecting as the clients it made", async () => {
  const file = fresh();
  await init(file);
  const tb = await withDynsec(file);
  const live: MqttClient[] = [];
  try {
    // Clients.
    await ok(tb, "createClient", "alice", "-p", "alicepw");
    await ok(tb, "createClient", "bob", "-p", "bobpw", "-c", "bob-device");
    assert.match(
      (await ctrl(tb, "createClient", "alice", "-p", "x")).stderr,
      /createClient: Error: Client already exists/,
    );
    assert.deepEqual((await ok(tb, "listClients")).trim().split("\n"), ["admin", "alice", "bob"]);
    assert.deepEqual(
      (await ok(tb, "listClients", "1", "1")).trim().split("\n"),
      ["alice"],
      "count 1 offset 1",
    );
    assert.match(await ok(tb, "getClient", "bob"), /Username: bob\nClientid: bob-device\n/);
    assert.match(
      (await ctrl(tb, "getClient", "carol")).stderr,
      /getClient: Error: Client not found/,
    );
    const saved = JSON.parse(readFileSync(file, "utf8"));
    assert.deepEqual(saved.clients.map((c: { username: string }) => c.username), [
      "admin",
      "alice",
      "bob",
    ], "saved before the answer");

    // A client without roles can log in but do nothing (default access: publish denied).
    let alice = await as(tb, "alice", "alicepw");
    assert.equal(await pubCode(alice, "a/b"), 0x87);
    assert.equal(await subCode(alice, "a/#"), 0x87);
    await endAll(alice);

    // Roles and ACLs.
    await ok(tb, "createRole", "pubA");
    await ok(tb, "addRoleACL", "pubA", "publishClientSend", "a/#", "allow", "1");
    await ok(tb, "addRoleACL", "pubA", "subscribePattern", "a/#", "allow");
    await ok(tb, "createRole", "denyAB");
    await ok(tb, "addRoleACL", "denyAB", "publishClientSend", "a/b", "deny");
    assert.match(
      (await ctrl(tb, "addRoleACL", "pubA", "publishClientSend", "a/#", "deny")).stderr,
      /ACL with this topic already exists/,
    );
    assert.match(
      await ok(tb, "getRole", "pubA"),
      /Rolename: pubA\nACLs:\s+publishClientSend\s+: allow : a\/# \(priority: 1\)\n\s+subscribePattern\s+: allow : a\/# \(priority: 0\)/,
    );
    assert.deepEqual((await ok(tb, "listRoles")).trim().split("\n"), ["admin", "denyAB", "pubA"]);
    await ok(tb, "addClientRole", "alice", "pubA", "1");
    await ok(tb, "addClientRole", "alice", "denyAB", "5");
    assert.match(
      await ok(tb, "getClient", "alice"),
      /Roles:\s+denyAB \(priority: 5\)\n\s+pubA \(priority: 1\)/,
    );
    alice = await as(tb, "alice", "alicepw");
    live.push(alice);
    assert.equal(await pubCode(alice, "a/b"), 0x87, "denyAB (priority 5) first");
    assert.notEqual(await pubCode(alice, "a/c"), 0x87);
    assert.equal(await subCode(alice, "a/#"), 1);
    assert.equal(await subCode(alice, "b/#"), 0x87);

    // The higher priority changes sides: pubA first now (the change closes alice's connection).
    const closed = new Promise<number>((resolve) =>
      alice.once("disconnect", (p) => resolve(p.reasonCode ?? 0))
    );
    await ok(tb, "removeClientRole", "alice", "denyAB");
    assert.equal(await closed, 0x98, "Mosquitto closes the connections of a changed client");
    await ok(tb, "addClientRole", "alice", "denyAB", "0");
    alice = await as(tb, "alice", "alicepw");
    live.push(alice);
    assert.notEqual(await pubCode(alice, "a/b"), 0x87, "pubA (priority 1) first now");

    // Groups: client roles first, then groups by priority.
    await ok(tb, "createGroup", "g1");
    await ok(tb, "createRole", "pubB");
    await ok(tb, "addRoleACL", "pubB", "publishClientSend", "b/#", "allow");
    await ok(tb, "addGroupRole", "g1", "pubB", "2");
    await ok(tb, "addGroupClient", "g1", "bob", "4");
    assert.match(
      await ok(tb, "getGroup", "g1"),
      /Groupname: g1\nRoles:\s+pubB \(priority: 2\)\nClients:\s+bob/,
    );
    assert.match(await ok(tb, "getClient", "bob"), /Groups:\s+g1 \(priority: 4\)/);
    assert.match(
      (await ctrl(tb, "addGroupClient", "g1", "bob")).stderr,
      /Client is already in this group/,
    );
    assert.deepEqual((await ok(tb, "listGroups")).trim().split("\n"), ["g1"]);
    assert.equal(
      await loginCode(tb, "bob", "bobpw", { clientId: "other" }),
      0x87,
      "bob must use his client id",
    );
    const bob = await as(tb, "bob", "bobpw", { clientId: "bob-device" });
    live.push(bob);
    assert.notEqual(await pubCode(bob, "b/1"), 0x87);
    assert.equal(await pubCode(bob, "a/1"), 0x87);

    // setClientId / setClientPassword.
    await ok(tb, "setClientId", "bob");
    assert.equal(await loginCode(tb, "bob", "bobpw", { clientId: "other" }), 0);
    await ok(tb, "setClientPassword", "bob", "newpw");
    assert.equal(await loginCode(tb, "bob", "bobpw"), 0x87);
    assert.equal(await loginCode(tb, "bob", "newpw"), 0);

    // Disable: the live connection goes at once; enable lets the client back.
    alice = await as(tb, "alice", "alicepw");
    live.push(alice);
    const gone = new Promise<number>((resolve) =>
      alice.once("disconnect", (p) => resolve(p.reasonCode ?? 0))
    );
    await ok(tb, "disableClient", "alice");
    assert.equal(await gone, 0x98);
    assert.match(await ok(tb, "getClient", "alice"), /Disabled: true/);
    assert.equal(await loginCode(tb, "alice", "alicepw"), 0x87);
    await ok(tb, "enableClient", "alice");
    assert.equal(await loginCode(tb, "alice", "alicepw"), 0);

    // Anonymous group and default access.
    await ok(tb, "setAnonymousGroup", "g1");
    assert.equal((await ok(tb, "getAnonymousGroup")).trim(), "g1");
    assert.match(
      (await ctrl(tb, "deleteGroup", "g1")).stderr,
      /Deleting the anonymous group is forbidden/,
    );
    await ok(tb, "setDefaultACLAccess", "subscribe", "allow");
    assert.match(await ok(tb, "getDefaultACLAccess"), /subscribe\s+: allow/);
    const carol = await as(tb, "alice", "alicepw");
    live.push(carol);
    await ok(tb, "removeRoleACL", "pubA", "subscribePattern", "a/#");
    // Default access changes apply to live connections at once (no reconnection).
    const dave = await as(tb, "bob", "newpw");
    live.push(dave);
    assert.equal(await subCode(dave, "z/#"), 1, "default subscribe: allow");
    await ok(tb, "setDefaultACLAccess", "subscribe", "deny");
    assert.equal(await subCode(dave, "z/#"), 0x87, "the change applies at once");

    // Deletions.
    await ok(tb, "createGroup", "g2");
    await ok(tb, "addGroupClient", "g2", "alice");
    await ok(tb, "removeGroupClient", "g2", "alice");
    await ok(tb, "removeGroupRole", "g1", "pubB");
    await ok(tb, "deleteGroup", "g2");
    await ok(tb, "deleteRole", "denyAB");
    assert.match(await ok(tb, "getClient", "alice"), /Roles:\s+pubA \(priority: 1\)\n(?!.*denyAB)/);
    await ok(tb, "deleteClient", "bob");
    assert.equal(await loginCode(tb, "bob", "newpw"), 0x87);
    assert.match((await ctrl(tb, "getRole", "denyAB")).stderr, /Role not found/);

    // What the file holds now.
    const end = parseDynsec(readFileSync(file, "utf8")).data;
    assert.deepEqual([...end.clients.keys()].sort(), ["admin", "alice"]);
    assert.deepEqual([...end.groups.keys()], ["g1"]);
    assert.equal(end.anonymousGroup, "g1");
    assert.deepEqual([...end.roles.keys()].sort(), ["admin", "pubA", "pubB"]);
    assert.deepEqual(end.clients.get("alice")!.roles, [{ name: "pubA", priority: 1 }]);
  } finally {
    await endAll(...live);
    await tb.stop();
  }
});

test("broker: anonymous group, %c/%u, publishClientReceive per reader, unsubscribe ACLs, SIGHUP reload", async () => {
  const pw = await hashPassword(new TextEncoder().encode("pw"), { iterations: 101 });
  const file = fresh();
  const doc = {
    defaultACLAccess: { publishClientReceive: true, unsubscribe: true },
    clients: [
      { username: "dev", encoded_password: pw, roles: [{ rolename: "device" }] },
      { username: "reader", encoded_password: pw, roles: [{ rolename: "reader" }] },
    ],
    groups: [{ groupname: "anon", roles: [{ rolename: "public" }] }],
    anonymousGroup: "anon",
    roles: [
      {
        rolename: "device",
        acls: [
          { acltype: "publishClientSend", topic: "dev/%c/%u/#", allow: true },
          { acltype: "subscribePattern", topic: "dev/#", allow: true },
        ],
      },
      {
        rolename: "reader",
        acls: [
          { acltype: "subscribePattern", topic: "#", allow: true },
          { acltype: "publishClientReceive", topic: "dev/+/dev/secret", allow: false },
          { acltype: "unsubscribePattern", topic: "keep/#", allow: false },
        ],
      },
      {
        rolename: "public",
        acls: [
          { acltype: "publishClientSend", topic: "public/#", allow: true },
          { acltype: "subscribeLiteral", topic: "public/news", allow: true },
        ],
      },
    ],
  };
  writeFileSync(file, JSON.stringify(doc));
  const tb = await withDynsec(file, { allow_anonymous: true });
  const clients: MqttClient[] = [];
  try {
    const dev = await as(tb, "dev", "pw", { clientId: "d1" });
    const reader = await as(tb, "reader", "pw");
    const anon = await connect(tb, { protocolVersion: 5 });
    clients.push(dev, reader, anon);
    // %c/%u: only its own subtree.
    assert.equal(await pubCode(dev, "dev/d1/dev/x"), 0);
    assert.equal(await pubCode(dev, "dev/d2/dev/x"), 0x87);
    // The anonymous group's roles.
    assert.equal(await pubCode(anon, "public/a"), 0);
    assert.equal(await pubCode(anon, "private/a"), 0x87);
    assert.equal(await subCode(anon, "public/news"), 1);
    assert.equal(await subCode(anon, "public/#"), 0x87, "subscribeLiteral is the exact filter");
    // publishClientReceive: reader gets dev/d1/dev/x but not the secret.
    assert.equal(await subCode(reader, "dev/#"), 1);
    assert.equal(await subCode(reader, "keep/#"), 1);
    const got: string[] = [];
    reader.on("message", (t) => got.push(t));
    await dev.publishAsync("dev/d1/dev/secret", "s", { qos: 1 });
    await dev.publishAsync("dev/d1/dev/x", "x", { qos: 1 });
    await until(() => got.includes("dev/d1/dev/x"), 3000, "the readable message");
    assert.deepEqual(got, ["dev/d1/dev/x"], "the denied topic was not delivered");
    // Unsubscribe ACLs: refused with 0x87, the subscription stays.
    const un = await reader.unsubscribeAsync("keep/#") as unknown as { granted?: number[] };
    assert.deepEqual(un.granted, [0x87]);
    const un2 = await reader.unsubscribeAsync("dev/#") as unknown as { granted?: number[] };
    assert.deepEqual(un2.granted, [0]);
    const rs = tb.broker.sessions.get(reader.options.clientId!)!;
    assert.ok(rs.subscriptions.has("keep/#"), "the refused unsubscribe left the subscription");
    assert.ok(!rs.subscriptions.has("dev/#"));

    // SIGHUP: the file is read again; a broken one leaves the data in force.
    doc.clients.push({ username: "late", encoded_password: pw, roles: [] });
    writeFileSync(file, JSON.stringify(doc));
    assert.equal(await loginCode(tb, "late", "pw"), 0x87);
    await tb.broker.reload();
    assert.equal(await loginCode(tb, "late", "pw"), 0);
    writeFileSync(file, "{broken");
    await tb.broker.reload();
    assert.equal(await loginCode(tb, "late", "pw"), 0, "the previous data stays in force");
  } finally {
    await endAll(...clients);
    await tb.stop();
  }
});

test("a changed rule applies at once to live connections, answers cached per topic included", async () => {
  const file = fresh();
  await init(file);
  const tb = await withDynsec(file);
  const clients: MqttClient[] = [];
  try {
    await ok(tb, "createClient", "r", "-p", "rpw");
    await ok(tb, "setDefaultACLAccess", "subscribe", "allow");
    await ok(tb, "setDefaultACLAccess", "publishClientSend", "allow");
    const reader = await as(tb, "r", "rpw");
    const writer = await as(tb, "r", "rpw", { clientId: "w" });
    clients.push(reader, writer);
    assert.equal(await subCode(reader, "q/#"), 1);
    const got: string[] = [];
    reader.on("message", (_t, p) => got.push(p.toString()));
    await writer.publishAsync("q/1", "one", { qos: 1 });
    await until(() => got.length === 1, 3000, "the first message");
    // Default access has no kick in Mosquitto: the same connections, the same topic.
    await ok(tb, "setDefaultACLAccess", "publishClientReceive", "deny");
    await writer.publishAsync("q/1", "two", { qos: 1 });
    await ok(tb, "setDefaultACLAccess", "publishClientReceive", "allow");
    await writer.publishAsync("q/1", "three", { qos: 1 });
    await until(() => got.length === 2, 3000, "the third message");
    assert.deepEqual(got, ["one", "three"]);
    assert.equal(reader.connected && writer.connected, true);
  } finally {
    await endAll(...clients);
    await tb.stop();
  }
});

test("control topic: only clients the ACLs allow may publish to $CONTROL; others get 0x87 and no answer", async () => {
  const file = fresh();
  await init(file);
  const tb = await withDynsec(file);
  const c0 = await as(tb, "admin", "adminpw");
  try {
    await ok(tb, "createClient", "eve", "-p", "evepw");
    await ok(tb, "setDefaultACLAccess", "publishClientSend", "allow");
    const eve = await as(tb, "eve", "evepw");
    const answers: string[] = [];
    await c0.subscribeAsync(`${DYNSEC_TOPIC}/response`);
    c0.on("message", (_t, p) => answers.push(p.toString()));
    const cmd = JSON.stringify({ commands: [{ command: "createClient", username: "mallory" }] });
    assert.equal(
      await pubCode(eve, "x/y"),
      0,
      'default publish: allow (mosquitto_ctrl 2.0.11\'s "access")',
    );
    const code = await eve.publishAsync(DYNSEC_TOPIC, cmd, { qos: 1 }).then(() => 0, (e) => e.code);
    assert.equal(code, 0x87, "$CONTROL is never granted by default access");
    await c0.publishAsync(DYNSEC_TOPIC, JSON.stringify({ commands: [{ command: "listClients" }] }));
    await until(() => answers.length === 1, 5000, "the admin's answer");
    assert.deepEqual(JSON.parse(answers[0]), {
      responses: [{ command: "listClients", data: { totalCount: 2, clients: ["admin", "eve"] } }],
    });
    await endAll(eve);
  } finally {
    await endAll(c0);
    await tb.stop();
  }
});

/** Sends one request with MQTT.js and resolves with its responses. */
async function request(c: MqttClient, commands: unknown[]): Promise<Record<string, any>[]> {
  const topic = `${DYNSEC_TOPIC}/response`;
  const answer = new Promise<Record<string, any>[]>((resolve) => {
    const on = (t: string, p: Uint8Array) => {
      if (t !== topic) return;
      c.off("message", on);
      resolve(JSON.parse(new TextDecoder().decode(p)).responses);
    };
    c.on("message", on);
  });
  await c.publishAsync(DYNSEC_TOPIC, JSON.stringify({ commands }), { qos: 1 });
  return await answer;
}

test("JSON API: modifyClient/Group/Role, verbose lists with paging, correlationData and Mosquitto's errors", async () => {
  const file = fresh();
  await init(file);
  const tb = await withDynsec(file);
  const admin = await as(tb, "admin", "adminpw");
  try {
    await admin.subscribeAsync(`${DYNSEC_TOPIC}/response`);
    let r = await request(admin, [
      {
        command: "createRole",
        rolename: "r1",
        acls: [{ acltype: "publishClientSend", topic: "m/#", allow: true }],
      },
      { command: "createRole", rolename: "r2" },
      { command: "createGroup", groupname: "g", textname: "Group G" },
      {
        command: "createClient",
        username: "u1",
        password: "p1",
        roles: [{ rolename: "r1", priority: 2 }],
        groups: [{ groupname: "g" }],
        correlationData: "c-1",
      },
      { command: "createClient", username: "u2", password: "p2", clientid: "" },
      { command: "createClient", username: "u3", roles: [{ rolename: "nope" }] },
      { command: "nosuchCommand" },
      { command: "CREATEGROUP", groupname: "h" },
      "not an object",
    ]);
    assert.deepEqual(r, [
      { command: "createRole" },
      { command: "createRole" },
      { command: "createGroup" },
      { command: "createClient", correlationData: "c-1" },
      { command: "createClient" },
      { command: "createClient", error: "Role not found" },
      { command: "nosuchCommand", error: "Unknown command" },
      { command: "createGroup" },
      { command: "Unknown command", error: "Command not an object" },
    ]);
    r = await request(admin, [
      {
        command: "modifyClient",
        username: "u2",
        textname: "U two",
        clientid: "dev2",
        roles: [{ rolename: "r2" }],
        groups: [{ groupname: "g", priority: 5 }],
      },
      {
        command: "modifyGroup",
        groupname: "h",
        roles: [{ rolename: "r1" }],
        clients: [{ username: "u1" }],
      },
      {
        command: "modifyRole",
        rolename: "r2",
        textdescription: "two",
        acls: [{ acltype: "subscribeLiteral", topic: "lit", allow: true, priority: 3 }],
      },
      { command: "modifyRole", rolename: "zz" },
      { command: "modifyClient", username: "u2", groups: [{ groupname: "nope" }] },
      { command: "getClient", username: "u2" },
      { command: "getGroup", groupname: "h" },
      { command: "getRole", rolename: "r2" },
      { command: "listClients", verbose: true, count: 2, offset: 1 },
      { command: "listGroups", count: 1 },
      { command: "listRoles", offset: 2 },
    ]);
    assert.deepEqual(r.slice(0, 5), [
      { command: "modifyClient" },
      { command: "modifyGroup" },
      { command: "modifyRole" },
      { command: "modifyRole", error: "Role does not exist" },
      {
        command: "modifyClient",
        error: "'groups' contains an object with a 'groupname' that does not exist",
      },
    ]);
    assert.deepEqual(r[5].data.client, {
      username: "u2",
      clientid: "dev2",
      textname: "U two",
      roles: [{ rolename: "r2" }],
      groups: [{ groupname: "g", priority: 5 }],
    });
    assert.deepEqual(r[6].data.group, {
      groupname: "h",
      clients: [{ username: "u1" }],
      roles: [{ rolename: "r1" }],
    });
    assert.deepEqual(r[7].data.role, {
      rolename: "r2",
      textdescription: "two",
      acls: [{ acltype: "subscribeLiteral", topic: "lit", priority: 3, allow: true }],
    });
    assert.equal(r[8].data.totalCount, 3);
    assert.deepEqual(r[8].data.clients.map((c: { username: string }) => c.username), ["u1", "u2"]);
    assert.deepEqual(r[8].data.clients[0].groups, [{ groupname: "g" }, { groupname: "h" }]);
    assert.deepEqual(r[9].data, { totalCount: 2, groups: ["g"] });
    assert.deepEqual(r[10].data, { totalCount: 3, roles: ["r2"] });

    // u1 logs in and publishes through r1; u2 needs its client id now.
    const u1 = await as(tb, "u1", "p1");
    assert.notEqual(await pubCode(u1, "m/1"), 0x87);
    await endAll(u1);
    assert.equal(await loginCode(tb, "u2", "p2", { clientId: "x" }), 0x87);
    assert.equal(await loginCode(tb, "u2", "p2", { clientId: "dev2" }), 0);

    r = await request(admin, [{ command: "setClientPassword", username: "u1", password: "" }]);
    assert.deepEqual(r, [{ command: "setClientPassword", error: "Empty password is not allowed" }]);
    // Text Mosquitto's cJSON could not read back (a lone surrogate) is refused, not saved.
    r = await request(admin, [
      { command: "modifyClient", username: "u1", textname: "bad\ud800" },
      { command: "modifyRole", rolename: "r1", textdescription: "\udc00" },
      { command: "createGroup", groupname: "g\ud800" },
    ]);
    assert.deepEqual(r, [
      { command: "modifyClient", error: "Invalid/missing textname" },
      { command: "modifyRole", error: "Invalid/missing textdescription" },
      { command: "createGroup", error: "Group name not valid UTF-8" },
    ]);
  } finally {
    await endAll(admin);
    await tb.stop();
  }
});

test("console: dynamic-security admins (clients that may send it commands) sign in by password", async () => {
  const file = fresh();
  await init(file);
  const tb = await withDynsec(file);
  try {
    await ok(tb, "createClient", "user", "-p", "userpw");
    const st = new ConsoleState(tb.broker);
    const signIn = passwordSignInOf(tb.broker, st.sessions)!;
    assert.equal(await signIn("admin", "adminpw"), "admin");
    assert.equal(await signIn("admin", "wrong"), null);
    assert.equal(await signIn("user", "userpw"), null, "not allowed to send to $CONTROL");
    assert.equal(await signIn("nobody", "x"), null);
    await ok(tb, "disableClient", "admin");
    assert.equal(await signIn("admin", "adminpw"), null, "disabled");
  } finally {
    await tb.stop();
  }
});

test("saving: a change that cannot be saved is undone and answered with an error; the file stays whole", async () => {
  const file = fresh();
  await init(file);
  const tb = await withDynsec(file);
  const admin = await as(tb, "admin", "adminpw");
  try {
    await admin.subscribeAsync(`${DYNSEC_TOPIC}/response`);
    const before = readFileSync(file, "utf8");
    mkdirSync(`${file}.new`); // the temporary file cannot be created
    let r = await request(admin, [
      { command: "createClient", username: "lost", password: "x" },
      { command: "listClients" },
    ]);
    assert.equal(r[0].error, "Internal error: the configuration could not be saved");
    assert.deepEqual(r[1].data.clients, ["admin"], "the change was undone");
    assert.equal(readFileSync(file, "utf8"), before);
    rmSync(`${file}.new`, { recursive: true });
    r = await request(admin, [{ command: "createClient", username: "kept", password: "x" }]);
    assert.deepEqual(r, [{ command: "createClient" }]);
    assert.ok(
      JSON.parse(readFileSync(file, "utf8")).clients.some((c: { username: string }) =>
        c.username === "kept"
      ),
    );
    assert.ok(!existsSync(`${file}.new`));
  } finally {
    await endAll(admin);
    await tb.stop();
  }
});

test("control: at most MAX_PENDING requests are held; more are answered at once with an error", async () => {
  const file = fresh();
  await init(file);
  const ds = new DynamicSecurity(file, silentLogger);
  await ds.load();
  const from = { clientId: "a", username: "admin", listener: undefined };
  const req = (i: number) =>
    new TextEncoder().encode(JSON.stringify({
      commands: [{ command: "createRole", rolename: `r${i}` }],
    }));
  const answers = await Promise.all(
    Array.from({ length: MAX_PENDING + 6 }, (_, i) => ds.control(req(i), from)),
  );
  const parsed = answers.map((a) => JSON.parse(new TextDecoder().decode(a)).responses[0]);
  assert.equal(parsed.filter((r) => r.error === undefined).length, MAX_PENDING);
  assert.deepEqual(parsed.at(-1), {
    command: "Unknown command",
    error: "Too many requests waiting; try again",
  });
  assert.equal(ds.data.roles.size, MAX_PENDING + 1, "the admin role and one per accepted request");
  assert.equal(JSON.parse(readFileSync(file, "utf8")).roles.length, MAX_PENDING + 1);
});

test("control: thousands of random, ill-typed commands never throw; every one gets an answer and the file stays loadable", async () => {
  const file = fresh();
  await init(file);
  const ds = new DynamicSecurity(file, silentLogger);
  await ds.load();
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const names = ["a", "b", "admin", "", "__proto__", "x/y", "\u0000", "\ud800"];
  const value = (depth = 0): unknown => {
    switch (rnd(depth > 1 ? 5 : 8)) {
      case 0:
        return names[rnd(names.length)];
      case 1:
        return rnd(3) - 1;
      case 2:
        return null;
      case 3:
        return rnd(2) === 0;
      case 4:
        return ["a/#", "#", "+/x", "a/#/b", "$CONTROL/#", "%c/%u"][rnd(6)];
      case 5:
        return Array.from({ length: rnd(3) }, () => value(depth + 1));
      default: {
        const o: Record<string, unknown> = {};
        for (
          const k of ["rolename", "groupname", "username", "acltype", "topic", "priority", "allow"]
        ) {
          if (rnd(2)) o[k] = value(depth + 1);
        }
        return o;
      }
    }
  };
  const commandNames = [
    "createClient",
    "deleteClient",
    "setClientPassword",
    "setClientId",
    "modifyClient",
    "enableClient",
    "disableClient",
    "addClientRole",
    "removeClientRole",
    "getClient",
    "listClients",
    "createGroup",
    "deleteGroup",
    "modifyGroup",
    "getGroup",
    "listGroups",
    "addGroupClient",
    "removeGroupClient",
    "addGroupRole",
    "removeGroupRole",
    "setAnonymousGroup",
    "getAnonymousGroup",
    "createRole",
    "deleteRole",
    "modifyRole",
    "getRole",
    "listRoles",
    "addRoleACL",
    "removeRoleACL",
    "setDefaultACLAccess",
    "getDefaultACLAccess",
  ];
  assert.deepEqual([...commandNames].sort(byName), COMMANDS, "every command the API takes");
  const keys = [
    "username",
    "password",
    "clientid",
    "groupname",
    "rolename",
    "textname",
    "textdescription",
    "roles",
    "groups",
    "clients",
    "acls",
    "acltype",
    "topic",
    "priority",
    "allow",
    "count",
    "offset",
    "verbose",
    "correlationData",
  ];
  const from = { clientId: "a", username: "admin", listener: undefined };
  let changes = 0;
  for (let round = 0; round < 40; round++) {
    const commands = Array.from({ length: 50 }, () => {
      const c: Record<string, unknown> = { command: commandNames[rnd(commandNames.length)] };
      for (const k of keys) if (rnd(3) === 0) c[k] = value();
      if (typeof c.correlationData !== "string") delete c.correlationData;
      if (typeof c.password === "string" && rnd(2)) c.password = "pw";
      return c;
    });
    const out = JSON.parse(new TextDecoder().decode(
      await ds.control(new TextEncoder().encode(JSON.stringify({ commands })), from),
    ));
    assert.equal(out.responses.length, commands.length);
    for (const r of out.responses) {
      assert.equal(typeof r.command, "string");
      if (!r.error && /^(create|add|modify|set|delete|remove)/.test(r.command)) changes++;
    }
  }
  assert.ok(changes > 50, `only ${changes} commands changed something`);
  // What was saved loads again, without warnings, and equals what is in force.
  const again = new DynamicSecurity(file, silentLogger);
  await again.load();
  assert.equal(formatDynsec(again.data as never), formatDynsec(ds.data as never));
  const saved = readFileSync(file, "utf8");
  assert.deepEqual(parseDynsec(saved).warnings, []);
  // No lone surrogate (JSON.stringify writes it as an escape) that Mosquitto's cJSON would refuse.
  assert.ok(!/\\ud[89a-f][0-9a-f]{2}/i.test(saved), "a lone surrogate was saved");
  for (const bad of ["", "null", "[]", '{"commands":{}}', '{"commands":[1,null,[]]}', "\xff\xfe"]) {
    const r = JSON.parse(new TextDecoder().decode(
      await ds.control(new TextEncoder().encode(bad), from),
    ));
    assert.ok(r.responses.length >= 1 && r.responses.every((x: { error?: string }) => x.error));
  }
});

test("config: [[plugins]] dynamic-security with config_file; a missing file or unknown plugin is refused", () => {
  const c = parseConfig(
    `[[plugins]]\nname = "dynamic-security"\nconfig_file = "/x/ds.json"\n`,
    "p.toml",
  );
  assert.deepEqual(c.plugins, [{ name: "dynamic-security", config_file: "/x/ds.json" }]);
  assert.throws(
    () => parseConfig(`[[plugins]]\nname = "dynamic-security"\n`, "p.toml"),
    /key "plugins\[0\]\.config_file": dynamic-security needs config_file/,
  );
  assert.throws(
    () => parseConfig(`[[plugins]]\nname = "auth-plugin"\nconfig_file = "a"\n`, "p.toml"),
    /p\.toml:2: key "plugins\[0\]\.name": expected "dynamic-security"/,
  );
  assert.throws(() => parseConfig(`plugins = 1\n`, "p.toml"), /expected an array of tables/);
});

test("config check (serve --test-config): dynamic security's file is read and a corrupted one reported", async () => {
  const good = fresh();
  await init(good);
  const bad = fresh();
  writeFileSync(bad, '{"clients": [{"username": 7}]}');
  const conf = (file: string) =>
    parseConfig(
      `persistence = false\n[[plugins]]\nname = "dynamic-security"\nconfig_file = ${
        JSON.stringify(file)
      }\n`,
      "p.toml",
    );
  assert.deepEqual(checkFiles(conf(good)), []);
  assert.deepEqual(checkFiles(conf(bad)), [
    `${bad}: clients[0]: username is missing or not a string`,
  ]);
  const missing = join(dir, "none.json");
  assert.deepEqual(checkFiles(conf(missing)), [
    `p.toml: key "plugins[0].config_file": cannot read ${missing}: no such file`,
  ]);
});

test("mosquitto.conf: plugin …/mosquitto_dynamic_security.so with plugin_opt_config_file loads the built-in one", async () => {
  const file = fresh();
  await init(file);
  const conf = join(dir, `mosquitto${++n}.conf`);
  writeFileSync(
    conf,
    `listener 1883 127.0.0.1\nallow_anonymous false\npersistence false\n` +
      `plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\n` +
      `plugin_opt_config_file ${file}\n`,
  );
  const config = await loadConfig(conf);
  assert.deepEqual(config.plugins, [{ name: "dynamic-security", config_file: file }]);
  config.listeners[0].port = 0; // as `midge serve -p 0` does
  const broker = assembleBroker(config, silentLogger).broker;
  const [l] = await broker.start();
  const tb: TestBroker = {
    broker,
    port: l.port,
    url: `mqtt://127.0.0.1:${l.port}`,
    stop: () => broker.stop(),
  };
  try {
    await ok(tb, "createClient", "m", "-p", "mpw");
    assert.equal(await loginCode(tb, "m", "mpw"), 0);
    assert.equal(await loginCode(tb, "m", "nope"), 0x87);
    assert.ok(broker.controls.has(DYNSEC_TOPIC));
  } finally {
    await tb.stop();
  }
});

// ---------------------------------------------------------------- real Mosquitto

test("real Mosquitto loads the file Midge saved and accepts the same clients with the same rights", async () => {
  assert.ok(MOSQUITTO, "mosquitto is not installed (apt-get install mosquitto)");
  assert.ok(PLUGIN, "mosquitto_dynamic_security.so not found (dpkg -L mosquitto)");
  const file = fresh();
  await init(file);
  /** The same questions to Midge and to Mosquitto. */
  const checks = async (t: TestBroker, who: string) => {
    assert.equal(await loginCode(t, "alice", "wrong"), 0x87, who);
    assert.equal(await loginCode(t, "carol", "carolpw"), 0x87, `${who}: carol is disabled`);
    assert.equal(await loginCode(t, "bob", "bobpw", { clientId: "nope" }), 0x87, who);
    const alice = await as(t, "alice", "alicepw");
    assert.equal(await pubCode(alice, "a/b"), 0x87, `${who}: denyAB (priority 5) first`);
    assert.equal(await pubCode(alice, "a/c"), 0, who);
    await endAll(alice);
    const bob = await as(t, "bob", "bobpw", { clientId: "bob-id" });
    assert.equal(await subCode(bob, "a/#"), 1, `${who}: through group g's role`);
    assert.equal(await subCode(bob, "b/#"), 0x87, who);
    await endAll(bob);
    const anon = await connect(t, { protocolVersion: 5 });
    assert.equal(await pubCode(anon, "public/x"), 0, `${who}: the anonymous group's role`);
    assert.equal(await pubCode(anon, "a/x"), 0x87, who);
    await endAll(anon);
    const admin = await as(t, "admin", "adminpw");
    assert.equal(await subCode(admin, `${DYNSEC_TOPIC}/#`), 1, who);
    await endAll(admin);
  };
  const tb = await withDynsec(file, { allow_anonymous: true });
  try {
    await ok(tb, "createClient", "alice", "-p", "alicepw");
    await ok(tb, "createClient", "bob", "-p", "bobpw", "-c", "bob-id");
    await ok(tb, "createClient", "carol", "-p", "carolpw");
    await ok(tb, "disableClient", "carol");
    await ok(tb, "createRole", "pubA");
    await ok(tb, "addRoleACL", "pubA", "publishClientSend", "a/#", "allow");
    await ok(tb, "addRoleACL", "pubA", "subscribePattern", "a/#", "allow");
    await ok(tb, "createRole", "denyAB");
    await ok(tb, "addRoleACL", "denyAB", "publishClientSend", "a/b", "deny");
    await ok(tb, "createRole", "public");
    await ok(tb, "addRoleACL", "public", "publishClientSend", "public/#", "allow");
    await ok(tb, "createGroup", "g");
    await ok(tb, "addGroupRole", "g", "pubA");
    await ok(tb, "addGroupClient", "g", "bob");
    await ok(tb, "addClientRole", "alice", "pubA", "1");
    await ok(tb, "addClientRole", "alice", "denyAB", "5");
    await ok(tb, "createGroup", "anon");
    await ok(tb, "addGroupRole", "anon", "public");
    await ok(tb, "setAnonymousGroup", "anon");
    await checks(tb, "Midge");
  } finally {
    await tb.stop();
  }
  const mdir = mkdtempSync(join(tmpdir(), "midge-dynsec-mosq-"));
  const port = await freePort();
  const conf = join(mdir, "mosquitto.conf");
  writeFileSync(
    conf,
    `user ${
      process.getuid?.() === 0 ? "root" : userInfo().username
    }\nlistener ${port} 127.0.0.1\nallow_anonymous true\nplugin ${PLUGIN}\nplugin_opt_config_file ${file}\n`,
  );
  const child = spawn(MOSQUITTO, ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d) => (log += d));
  const mq = { port, url: `mqtt://127.0.0.1:${port}` } as TestBroker;
  try {
    const end = Date.now() + 5000;
    while (await loginCode(mq, "alice", "alicepw") !== 0) {
      assert.ok(Date.now() < end && child.exitCode === null, `mosquitto did not start: ${log}`);
      await sleep(50);
    }
    await checks(mq, "Mosquitto");
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
    rmSync(mdir, { recursive: true, force: true });
  }
});
