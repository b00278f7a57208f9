// acl_file (Mosquitto's format): parsing, read/write/deny/pattern rules, %c/%u and the +/# widening
// attack, PUBLISH/SUBSCRIBE refusals (v5 0x87, v3 0x80 and silent drops), retained messages
// filtered per reader, and reload keeping the old rules when the new file is broken.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AclView, covers, overlaps, parseAcl, READ, WRITE } from "../src/auth/acl.ts";
import { Auth } from "../src/auth/auth.ts";
import { Logger } from "../src/sys/log.ts";
import { Session } from "../src/broker/session.ts";
import type { MqttClient } from "mqtt";
import {
  collect,
  connect,
  connectCollect,
  endAll,
  sleep,
  startBroker,
  type TestBroker,
} from "./helpers/broker.ts";

const dir = mkdtempSync(join(tmpdir(), "midge-acl-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(text: string): string {
  const path = join(dir, `acl${++n}`);
  writeFileSync(path, text);
  return path;
}

/** A view of `text` for a client id and user name. */
function view(text: string, clientId: string, username?: string): AclView {
  const { acl, problems } = parseAcl(text);
  assert.deepEqual(problems, []);
  return new AclView(acl, { clientId, username });
}

const RULES = `# anonymous clients
topic read $SYS/#
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write inbox/+

user bob
topic read public/#
topic bob/#

pattern readwrite clients/%c/#
pattern write users/%u/out
pattern deny clients/%c/locked
`;

test("parse: keywords, default readwrite, line numbers of every problem", () => {
  const { acl, problems } = parseAcl(RULES);
  assert.deepEqual(problems, []);
  assert.deepEqual(acl.anonymous.map((r) => [r.access, r.filter]), [
    [READ, "$SYS/#"],
    [READ, "public/#"],
  ]);
  assert.deepEqual(acl.users.get("bob")!.map((r) => [r.access, r.filter, r.line]), [
    [READ, "public/#", 11],
    [READ | WRITE, "bob/#", 12],
  ]);
  assert.equal(acl.patterns.length, 3);

  const bad = parseAcl(
    "topic\nuser\nfrobnicate a/b\ntopic sometimes a/b\ntopic read a/#/b\npattern read a/x%c/#\ntopic deny\ntopic read a b c\n",
  );
  assert.deepEqual(bad.problems.map((p) => p.line), [1, 2, 3, 4, 5, 6, 7]);
  assert.match(bad.problems[3].message, /unknown access "sometimes"/);
  assert.match(bad.problems[4].message, /invalid topic filter "a\/#\/b"/);
  assert.match(bad.problems[5].message, /whole topic level/);
  assert.match(bad.problems[6].message, /needs a topic after the access/);
  // Like Mosquitto, a topic may contain spaces when the access is given.
  assert.equal(bad.acl.anonymous.at(-1)!.filter, "a b c");
});

test("topic rules: anonymous section, per-user sections, read/write/readwrite, deny wins", () => {
  const anon = view(RULES, "x");
  assert.equal(anon.allows("public/news", READ), true);
  assert.equal(anon.allows("public/news", WRITE), false);
  assert.equal(anon.allows("$SYS/broker/uptime", READ), true);
  assert.equal(anon.allows("alice/a", READ), false);

  const alice = view(RULES, "x", "alice");
  assert.equal(alice.allows("alice/a/b", READ), true);
  assert.equal(alice.allows("alice/a/b", WRITE), true);
  assert.equal(alice.allows("alice/secret/x", READ), false, "deny beats the broader readwrite");
  assert.equal(alice.allows("alice/secret", READ), false, "alice/secret/# covers its parent");
  assert.equal(alice.allows("inbox/bob", WRITE), true);
  assert.equal(alice.allows("inbox/bob", READ), false);
  assert.equal(alice.allows("public/news", READ), false, "anonymous rules are not a user's");
  assert.equal(alice.allows("$SYS/broker/uptime", READ), false);

  const stranger = view(RULES, "x", "mallory");
  assert.equal(stranger.allows("public/news", READ), false, "an unknown user gets patterns only");
  assert.equal(stranger.allows("clients/x/data", WRITE), true);
});

test("pattern rules: %c and %u as whole levels; %u does not apply to anonymous clients", () => {
  const c = view(RULES, "dev1", "carol");
  assert.equal(c.allows("clients/dev1/t", READ), true);
  assert.equal(c.allows("clients/dev1/t", WRITE), true);
  assert.equal(c.allows("clients/dev2/t", READ), false);
  assert.equal(c.allows("users/carol/out", WRITE), true);
  assert.equal(c.allows("users/carol/out", READ), false);
  assert.equal(c.allows("users/dave/out", WRITE), false);
  assert.equal(c.allows("clients/dev1/locked", WRITE), false, "pattern deny");
  const anon = view(RULES, "dev1");
  assert.equal(anon.allows("clients/dev1/t", WRITE), true);
  assert.equal(anon.allows("users/undefined/out", WRITE), false);
});

test("a client id or user name with + # or / cannot widen a pattern (CVE-2017-7650 style)", () => {
  for (const id of ["+", "#", "a/+", "victim/x", ""]) {
    const v = view(RULES, id);
    assert.equal(v.allows(`clients/victim/x`, READ), false, `client id ${JSON.stringify(id)}`);
    assert.equal(v.allows(`clients/${id}/t`, WRITE), false, `client id ${JSON.stringify(id)}`);
    assert.equal(v.canSubscribe("clients/#"), false);
    assert.equal(v.canSubscribe("clients/+/t"), false);
  }
  for (const user of ["#", "+", "dave/x"]) {
    const v = view(RULES, "ok-id", user);
    assert.equal(v.allows("users/dave/out", WRITE), false, `user ${user}`);
    assert.equal(v.allows("users/dave/x/out", WRITE), false, `user ${user}`);
  }
  // A deny pattern that cannot be substituted denies its whole subtree instead of nothing.
  const deny = view("topic readwrite a/#\npattern deny a/%c/#\n", "#");
  assert.equal(deny.allows("a/anything", READ), false);
  assert.equal(view("topic readwrite a/#\npattern deny a/%c/#\n", "me").allows("a/x", READ), true);
});

test("a client id or user name starting with $ cannot widen a pattern into $SYS [MQTT-4.7.2-1]", () => {
  const rules = "pattern read %c/#\npattern read %u/#\npattern readwrite clients/%c/#\n";
  for (const [id, user] of [["$SYS", undefined], ["ok-id", "$SYS"], ["$SYS", "$SYS"]]) {
    const v = view(rules, id!, user);
    const who = `id ${id} user ${user}`;
    assert.equal(v.allows("$SYS/broker/uptime", READ), false, who);
    assert.equal(v.canSubscribe("$SYS/#"), false, who);
    assert.equal(v.canSubscribe("$SYS/broker/clients/+"), false, who);
  }
  // Below the first level a `$` is an ordinary character: the pattern still applies.
  assert.equal(view(rules, "$dev").allows("clients/$dev/t", WRITE), true);
  // A deny pattern that cannot be substituted denies its subtree instead.
  const deny = view("topic read $SYS/#\npattern deny %c/#\n", "$SYS");
  assert.equal(deny.allows("other/t", READ), false);
  assert.equal(deny.allows("$SYS/x", READ), false, "and the $SYS tree the pattern names");
  assert.equal(view("topic read $SYS/#\npattern deny %c/#\n", "me").allows("$SYS/x", READ), true);
});

test("subscription filters: refused when nothing they match is readable, or all of it is denied", () => {
  const alice = view(RULES, "x", "alice");
  assert.equal(alice.canSubscribe("alice/#"), true);
  assert.equal(alice.canSubscribe("#"), true, "partly readable: checked per message");
  assert.equal(alice.canSubscribe("alice/secret/#"), false, "wholly denied");
  assert.equal(alice.canSubscribe("alice/secret/+/x"), false);
  assert.equal(alice.canSubscribe("inbox/+"), false, "write-only");
  assert.equal(alice.canSubscribe("bob/#"), false);
  assert.equal(alice.canSubscribe("$SYS/#"), false);

  assert.equal(covers("a/#", "a"), true);
  assert.equal(covers("a/#", "a/+/c"), true);
  assert.equal(covers("a/+", "a/#"), false);
  assert.equal(covers("+/b", "x/b"), true);
  assert.equal(covers("#", "$SYS/x"), false, "[MQTT-4.7.2-1]");
  assert.equal(covers("#", "+/x"), true);
  assert.equal(overlaps("a/+/c", "a/b/#"), true);
  assert.equal(overlaps("a/b", "a/#"), true);
  assert.equal(overlaps("a/+", "a"), false);
  assert.equal(overlaps("#", "$SYS/#"), false);
  assert.equal(overlaps("$SYS/+", "$SYS/x"), true);
});

// --- Through the broker -------------------------------------------------------------------------

/** The reason code of a PUBLISH's PUBACK/PUBREC (MQTT.js rejects codes >= 0x80 with `code`). */
async function pubCode(c: MqttClient, topic: string, qos: 1 | 2 = 1): Promise<number> {
  try {
    const ack = (await c.publishAsync(topic, "x", { qos })) as { reasonCode?: number } | undefined;
    return ack?.reasonCode ?? 0;
  } catch (e) {
    return (e as { code?: number }).code ?? -1;
  }
}

/** The SUBACK codes for `filters` (MQTT.js rejects a SUBACK holding a failure code). */
async function subCodes(c: MqttClient, filters: string[], qos: 0 | 1 = 1): Promise<number[]> {
  try {
    return (await c.subscribeAsync(filters, { qos })).map((g) => g.qos);
  } catch (e) {
    const granted = (e as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw e;
    return granted;
  }
}

/** An accepted PUBLISH: success or "no matching subscribers". */
const ACCEPTED = [0, 0x10];

async function aclBroker(text: string): Promise<TestBroker> {
  return await startBroker({ acl_file: file(text), allow_anonymous: true });
}

test("v5: PUBLISH without write access gets PUBACK/PUBREC 0x87 and is not delivered; QoS 0 dropped", async () => {
  const tb = await aclBroker("topic read #\ntopic write ok/#\n");
  const sub = await connect(tb, { protocolVersion: 5 });
  const got = collect(sub);
  await sub.subscribeAsync("#", { qos: 1 });
  const pub = await connect(tb, { protocolVersion: 5 });
  try {
    assert.equal(await pubCode(pub, "no/way", 1), 0x87);
    assert.equal(await pubCode(pub, "no/way", 2), 0x87);
    await pub.publishAsync("no/way", "q0", { qos: 0 });
    await pub.publishAsync("ok/1", "yes", { qos: 1 });
    const [m] = await got.next(1);
    assert.equal(m.topic, "ok/1");
    await sleep(100);
    assert.deepEqual(got.messages.map((x) => x.topic), ["ok/1"]);
  } finally {
    await endAll(sub, pub);
    await tb.stop();
  }
});

test("v3.1.1: a refused QoS 1 PUBLISH is acknowledged but not delivered; SUBSCRIBE refused with 0x80", async () => {
  const tb = await aclBroker("topic read #\ntopic write ok/#\n");
  const sub = await connect(tb);
  const got = collect(sub);
  const pub = await connect(tb);
  try {
    assert.deepEqual(await subCodes(sub, ["ok/#", "$SYS/#"]), [1, 0x80]);
    await pub.publishAsync("no/way", "x", { qos: 1 }); // resolves: PUBACK came
    await pub.publishAsync("ok/2", "y", { qos: 1 });
    const [m] = await got.next(1);
    assert.equal(m.topic, "ok/2");
    assert.equal(got.messages.length, 1);
  } finally {
    await endAll(sub, pub);
    await tb.stop();
  }
});

test("v5 SUBACK 0x87 for a filter with nothing readable; a partly readable filter only gets what it may read", async () => {
  const tb = await aclBroker(
    "topic readwrite pub/#\ntopic deny pub/hidden/#\ntopic write drop/#\n",
  );
  const c = await connect(tb, { protocolVersion: 5 });
  const got = collect(c);
  try {
    assert.deepEqual(await subCodes(c, ["pub/hidden/#", "drop/#", "#"], 0), [0x87, 0x87, 0]);
    assert.ok(ACCEPTED.includes(await pubCode(c, "drop/x")), "write-only topic");
    assert.equal(await pubCode(c, "pub/hidden/x"), 0x87, "deny covers writing too");
    assert.ok(ACCEPTED.includes(await pubCode(c, "pub/x")));
    const [m] = await got.next(1);
    assert.equal(m.topic, "pub/x");
    await sleep(100);
    assert.equal(got.messages.length, 1);
  } finally {
    await endAll(c);
    await tb.stop();
  }
});

test("retained messages go only to subscribers that may read their topic", async () => {
  const tb = await startBroker({
    acl_file: file(
      "topic read pub/#\nuser admin\ntopic readwrite #\nuser eve\ntopic read pub/#\ntopic read team/+/status\n",
    ),
    allow_anonymous: true,
  });
  const admin = await connect(tb, { username: "admin" });
  try {
    for (const t of ["pub/a", "team/x/status", "team/x/private", "secret/k"]) {
      await admin.publishAsync(t, t, { qos: 1, retain: true });
    }
    const eve = await connect(tb, { username: "eve", protocolVersion: 5 });
    const got = collect(eve);
    const granted = await eve.subscribeAsync("#", { qos: 1 });
    assert.equal(granted[0].qos, 1);
    await got.next(2);
    await sleep(150);
    assert.deepEqual(got.messages.map((m) => m.topic).sort(), ["pub/a", "team/x/status"]);
    assert.ok(got.messages.every((m) => m.packet.retain));
    await endAll(eve);

    const anon = await connect(tb);
    const got2 = collect(anon);
    // Nothing under team/ is readable for anonymous clients.
    assert.deepEqual(await subCodes(anon, ["team/#"]), [0x80]);
    await anon.subscribeAsync("pub/#", { qos: 1 });
    await got2.next(1);
    await sleep(100);
    assert.deepEqual(got2.messages.map((m) => m.topic), ["pub/a"]);
    await endAll(anon);
  } finally {
    await endAll(admin);
    await tb.stop();
  }
});

test("patterns through the broker: each client writes under clients/<its id>/ only; '#' as id gains nothing", async () => {
  const tb = await aclBroker("pattern readwrite clients/%c/#\ntopic read clients/#\n");
  const watcher = await connect(tb, { clientId: "watcher" });
  const got = collect(watcher);
  await watcher.subscribeAsync("clients/#", { qos: 1 });
  const dev = await connect(tb, { clientId: "dev7", protocolVersion: 5 });
  const evil = await connect(tb, { clientId: "#", protocolVersion: 5 });
  try {
    assert.ok(ACCEPTED.includes(await pubCode(dev, "clients/dev7/t")));
    assert.equal(await pubCode(dev, "clients/dev8/t"), 0x87);
    assert.equal(await pubCode(evil, "clients/dev7/t"), 0x87);
    // dev7's own subscription is readable (pattern grants read too).
    assert.deepEqual(await subCodes(dev, ["clients/dev7/#"]), [1]);
    const [m] = await got.next(1);
    assert.equal(m.topic, "clients/dev7/t");
    await sleep(100);
    assert.equal(got.messages.length, 1);
  } finally {
    await endAll(watcher, dev, evil);
    await tb.stop();
  }
});

test("through the broker: a client named $SYS may not subscribe to $SYS/# under pattern read %c/#", async () => {
  const tb = await aclBroker("pattern read %c/#\npattern readwrite clients/%c/#\n");
  const evil = await connect(tb, { clientId: "$SYS", protocolVersion: 5 });
  try {
    assert.deepEqual(await subCodes(evil, ["$SYS/#"]), [0x87]);
  } finally {
    await endAll(evil);
    await tb.stop();
  }
});

test("reload(): new rules apply to connected clients; a broken file keeps the old rules and logs file:line", async () => {
  const path = file("topic readwrite a/#\n");
  const tb = await startBroker({ acl_file: path });
  const lines: string[] = [];
  const auth = new Auth(tb.broker.config, new Logger(["all"], { sink: (l) => lines.push(l) }));
  await auth.load();
  const c = await connect(tb, { protocolVersion: 5 });
  try {
    assert.ok(ACCEPTED.includes(await pubCode(c, "a/1")));
    assert.equal(await pubCode(c, "b/1"), 0x87);

    writeFileSync(path, "topic readwrite b/#\n");
    assert.equal(await tb.broker.auth.reload(), true);
    assert.equal(await pubCode(c, "a/1"), 0x87);
    assert.ok(ACCEPTED.includes(await pubCode(c, "b/1")));

    writeFileSync(path, "topic readwrite a/#\n# fine\ntopci read c/#\n");
    assert.equal(await tb.broker.auth.reload(), false);
    assert.ok(ACCEPTED.includes(await pubCode(c, "b/1")), "old rules kept");
    assert.equal(await pubCode(c, "a/1"), 0x87);
    assert.equal(await auth.reload(), false);
    assert.ok(
      lines.some((l) => l.includes(`${path}:3: unknown keyword "topci"`)),
      lines.join("\n"),
    );
  } finally {
    await endAll(c);
    await tb.stop();
  }
});

test("a will is sent only if its publisher may write its topic when it fires", async () => {
  const tb = await aclBroker("topic read #\ntopic write ok/#\n");
  const sub = await connect(tb);
  const got = collect(sub);
  await sub.subscribeAsync("#", { qos: 1 });
  try {
    for (const topic of ["denied/will", "ok/will"]) {
      const w = await connect(tb, { will: { topic, payload: "gone", qos: 1, retain: false } });
      w.stream.destroy(); // no DISCONNECT: the will goes out
    }
    const [m] = await got.next(1);
    assert.equal(m.topic, "ok/will");
    await sleep(150);
    assert.equal(got.messages.length, 1);
  } finally {
    await endAll(sub);
    await tb.stop();
  }
});

test("without an acl_file every topic is allowed and no ACL work is done", async () => {
  const tb = await startBroker();
  assert.equal(tb.broker.auth.aclActive, false);
  assert.equal(
    tb.broker.auth.canRead(new Session("nobody"), "any/topic"),
    true,
    "even an unknown session",
  );
  await tb.stop();
});

test("a session resumed under another user name loses the queued messages that user may not read", async () => {
  const tb = await startBroker({
    acl_file: file("user alice\ntopic readwrite #\nuser bob\ntopic read a/#\n"),
    allow_anonymous: true,
  });
  const opts = { clientId: "shared-id", clean: false, protocolVersion: 4 as const };
  try {
    const alice = await connect(tb, { ...opts, username: "alice" });
    assert.deepEqual(await subCodes(alice, ["a/#", "b/#"]), [1, 1]);
    await alice.endAsync();
    const pub = await connect(tb, { username: "alice" });
    await pub.publishAsync("a/1", "for both", { qos: 1 });
    await pub.publishAsync("b/1", "alice only", { qos: 1 });
    await endAll(pub);

    const { client: bob, got } = await connectCollect(tb, { ...opts, username: "bob" });
    await got.next(1);
    await sleep(150);
    assert.deepEqual(got.messages.map((m) => m.topic), ["a/1"]);
    await endAll(bob);
  } finally {
    await tb.stop();
  }
  // A session nobody is bound to yet (restored from disk) is checked when its client returns.
  const auth = new Auth(tb.broker.config, new Logger(["none"]));
  await auth.load();
  const unbound = new Session("shared-id");
  unbound.username = "bob";
  assert.equal(auth.canRead(unbound, "b/1"), true, "deferred");
  assert.equal(auth.canPublish(unbound, "a/1"), false, "no will for an unknown owner");
  auth.bind(unbound);
  assert.equal(auth.canRead(unbound, "b/1"), false, "bob's rules once bound");
  assert.equal(auth.canRead(unbound, "a/1"), true);
  unbound.username = "alice";
  auth.bind(unbound);
  assert.equal(auth.canRead(unbound, "b/1"), true, "alice's rules after a CONNECT as alice");
});
