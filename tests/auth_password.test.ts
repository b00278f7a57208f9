// Password files (Mosquitto's $6$, $7$ and $argon2id$ formats) and login at CONNECT: test vectors,
// files written by Debian's mosquitto_passwd and argon2 at test time, one refusal code for every
// cause, allow_anonymous, the slow-down of repeated failures, and reload.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { connect as netConnect } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import {
  Auth,
  isLoopback,
  MAX_DELAY_MS,
  MAX_TRACKED_ADDRESSES,
  refusalDelay,
} from "../src/auth/auth.ts";
import {
  formatHash,
  hashPassword,
  parseHash,
  parsePasswordFile,
  verifyPassword,
  verifyPasswordSync,
} from "../src/auth/password.ts";
import { defaults, LISTENER_KEYS } from "../src/config/schema.ts";
import { Logger } from "../src/sys/log.ts";
import { connect, endAll, startBroker, type TestBroker, testConfig } from "./helpers/broker.ts";
import { type AnyPacket, connectPacket, rawConnect } from "./helpers/raw.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dir = mkdtempSync(join(tmpdir(), "midge-auth-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(text: string): string {
  const path = join(dir, `f${++n}`);
  writeFileSync(path, text);
  return path;
}

/** Runs a program; fails the test with its output when it does not exit 0. */
function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", input });
  assert.equal(r.status, 0, `${cmd} ${args.join(" ")}: ${r.error ?? ""}${r.stderr}`);
  return r.stdout;
}

let lastHost = 1;
/**
 * The CONNACK for CONNECT `extra` at `version`, from a raw socket. Each call comes from its own
 * loopback address (127.0.1.x, …) unless `from` is given, so failures do not slow each other down.
 */
function connack(
  tb: TestBroker,
  version: number,
  extra: AnyPacket,
  from = `127.0.${(++lastHost >> 8) + 1}.${lastHost & 255 || 1}`,
): Promise<AnyPacket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port: tb.port, host: "127.0.0.1", localAddress: from });
    const parser = mqttPacket.parser({ protocolVersion: version });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("no CONNACK"));
    }, 8000);
    parser.on("packet", (p: AnyPacket) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(p);
    });
    socket.on("data", (d: Buffer) => parser.parse(d));
    socket.on("error", reject);
    socket.on("connect", () => {
      socket.write(
        mqttPacket.generate(connectPacket(`c${++n}`, version, extra), { protocolVersion: version }),
      );
    });
  });
}
/** CONNACK code: v3 returnCode, v5 reasonCode. */
const code = (p: AnyPacket) => p.reasonCode ?? p.returnCode;

// --- Hash formats -------------------------------------------------------------------------------

test("$6$ (SHA-512 of password and salt): Mosquitto's test vector test/test", () => {
  const h = parseHash(
    "$6$njERlZMi/7DzNB9E$iiavfuXvUm8iyDZArTy7smTxh07GXXOrOsqxfW6gkOYVXHGk+W+i/8d3xDxrMwEPygEBhoA8A/gjQC0N2M4Lkw==",
  );
  assert.equal(h.kind, "sha512");
  assert.equal(verifyPasswordSync(h, enc("test")), true);
  assert.equal(verifyPasswordSync(h, enc("tesT")), false);
  assert.equal(verifyPasswordSync(h, enc("")), false);
});

test("$7$ (PBKDF2-SHA512, 101 iterations, 12-byte salt): Mosquitto 2.0 vector admin/admin", async () => {
  const text =
    "$7$101$Ezuo4G1TqYtTQDL/$Rko31yHY12ryMoyZTBNIUsCPb5SDa4WmUP3Xe2+V6P+QOSW3Gj6IDmpl6zQsAjutb476zEYdBeTw9tU7WZ1new==";
  const h = parseHash(text);
  assert.deepEqual(h.kind === "pbkdf2" && [h.iterations, h.salt.length], [101, 12]);
  assert.equal(verifyPasswordSync(h, enc("admin")), true);
  assert.equal(await verifyPassword(h, enc("admin")), true);
  assert.equal(await verifyPassword(h, enc("admin ")), false);
  assert.equal(formatHash(h), text, "formatHash is the inverse of parseHash");
});

test("$7$ with a 64-byte salt and 1000 iterations (Mosquitto 2.1), checked against Python's hashlib", async () => {
  const salt = Buffer.alloc(64, 7);
  const hex = run("/usr/bin/python3", [
    "-c",
    `import hashlib,sys; print(hashlib.pbkdf2_hmac('sha512', b'p\\xc3\\xa4ss', bytes([7])*64, 1000).hex())`,
  ]).trim();
  const text = `$7$1000$${salt.toString("base64")}$${Buffer.from(hex, "hex").toString("base64")}`;
  const h = parseHash(text);
  assert.equal(await verifyPassword(h, enc("päss")), true);
  assert.equal(await verifyPassword(h, enc("pass")), false);
});

test("$argon2id$ written by Debian's argon2 (Mosquitto 2.1's parameters) is verified", async () => {
  const phc = run(
    "argon2",
    ["saltsaltsaltsaltsaltsalt", "-id", "-t", "1", "-k", "47104", "-p", "1", "-l", "64", "-e"],
    "s3cret",
  ).trim();
  assert.match(phc, /^\$argon2id\$v=19\$m=47104,t=1,p=1\$/);
  const h = parseHash(phc);
  assert.equal(await verifyPassword(h, enc("s3cret")), true);
  assert.equal(await verifyPassword(h, enc("s3creT")), false);
  assert.equal(formatHash(h), phc);
});

test("hashPassword writes $7$ with a 12-byte salt and 1000 iterations by default; others on request", async () => {
  const pw = enc("hunter2");
  const h7 = await hashPassword(pw);
  assert.match(h7, /^\$7\$1000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
  assert.equal(verifyPasswordSync(parseHash(h7), pw), true);
  const h6 = await hashPassword(pw, { kind: "sha512" });
  assert.match(h6, /^\$6\$/);
  assert.equal(verifyPasswordSync(parseHash(h6), pw), true);
  const ha = await hashPassword(pw, { kind: "argon2id" });
  assert.match(ha, /^\$argon2id\$v=19\$m=47104,t=1,p=1\$/);
  assert.equal(await verifyPassword(parseHash(ha), pw), true);
  assert.notEqual(await hashPassword(pw), h7, "a fresh salt each time");
});

test("bad hashes are refused with a reason that does not echo the hash", () => {
  const bad: [string, RegExp][] = [
    ["plaintext", /not hashed.*midge passwd -U/],
    ["$5$abc$def", /unknown hash type "\$5\$"/],
    ["$6$!!!!$AAAA", /salt is not valid base64/],
    ["$6$AAAAAAAAAAAAAAAA$AAAA", /hash is 3 bytes, not 64/],
    [`$6$${"A".repeat(20)}$${"A".repeat(88)}`, /salt is 15 bytes \(expected 12 or 64\)/],
    [`$7$0$AAAAAAAAAAAAAAAA$${"A".repeat(86)}==`, /iteration count must be/],
    [`$7$101$AAAAAAAAAAAAAAAA`, /form \$7\$<iterations>\$<salt>\$<hash>/],
    ["$argon2i$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAA", /only the argon2id variant/],
    ["$argon2id$v=16$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAA", /version 19/],
    ["$argon2id$v=19$m=9999999999,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAA", /memory must be/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => parseHash(text), (e: Error) => {
      assert.match(e.message, re, text);
      return true;
    });
  }
});

test("password file: comments and lines without ':' skipped, names trimmed; every bad line reported", () => {
  const ok = parsePasswordFile(
    "# comment\n\nnot a user line\n  alice :$6$njERlZMi/7DzNB9E$iiavfuXvUm8iyDZArTy7smTxh07GXXOrOsqxfW6gkOYVXHGk+W+i/8d3xDxrMwEPygEBhoA8A/gjQC0N2M4Lkw==\r\n",
  );
  assert.deepEqual(ok.problems, []);
  assert.deepEqual([...ok.users.keys()], ["alice"]);
  const bad = parsePasswordFile(
    "a:$6$njERlZMi/7DzNB9E$iiavfuXvUm8iyDZArTy7smTxh07GXXOrOsqxfW6gkOYVXHGk+W+i/8d3xDxrMwEPygEBhoA8A/gjQC0N2M4Lkw==\nb:plain\n:$6$x$y\na:$6$njERlZMi/7DzNB9E$iiavfuXvUm8iyDZArTy7smTxh07GXXOrOsqxfW6gkOYVXHGk+W+i/8d3xDxrMwEPygEBhoA8A/gjQC0N2M4Lkw==\nc:\n",
  );
  assert.deepEqual(bad.problems.map((p) => p.line), [2, 3, 4, 5]);
  assert.match(bad.problems[2].message, /"a" is already defined on line 1/);
  assert.match(bad.problems[3].message, /"c" has no password hash/);
});

test("files written by Debian's mosquitto_passwd ($7$ and -H sha512) are read and verified", async () => {
  const path = join(dir, "mosq.pw");
  run("mosquitto_passwd", ["-c", "-b", path, "alice", "alice-pw"]);
  run("mosquitto_passwd", ["-b", "-H", "sha512", path, "bob", "bob pw"]);
  const { users, problems } = parsePasswordFile(
    new TextDecoder().decode(spawnSync("cat", [path]).stdout),
  );
  assert.deepEqual(problems, []);
  const alice = users.get("alice")!;
  assert.equal(alice.kind, "pbkdf2");
  assert.equal(alice.salt.length, 12);
  assert.equal(await verifyPassword(alice, enc("alice-pw")), true);
  assert.equal(await verifyPassword(alice, enc("bob pw")), false);
  assert.equal(users.get("bob")!.kind, "sha512");
  assert.equal(verifyPasswordSync(users.get("bob")!, enc("bob pw")), true);

  // And the broker lets them in with those files, and only with the right passwords.
  const tb = await startBroker({ password_file: path, allow_anonymous: false });
  try {
    for (const [u, p] of [["alice", "alice-pw"], ["bob", "bob pw"]]) {
      const c = await connect(tb, { username: u, password: p });
      await endAll(c);
    }
    assert.equal(code(await connack(tb, 4, { username: "alice", password: "bob pw" })), 5);
  } finally {
    await tb.stop();
  }
});

// --- Login at CONNECT ---------------------------------------------------------------------------

/** A password file with user "test", password "test" (Mosquitto's $6$ vector). */
const testUserFile = () =>
  file(
    "test:$6$njERlZMi/7DzNB9E$iiavfuXvUm8iyDZArTy7smTxh07GXXOrOsqxfW6gkOYVXHGk+W+i/8d3xDxrMwEPygEBhoA8A/gjQC0N2M4Lkw==\n",
  );

test("wrong user and wrong password get the same CONNACK: v3 return code 5, v5 0x87 [MQTT-3.2.2-5 v3.1.1][MQTT-3.2.2-7 v5]", async () => {
  const tb = await startBroker({ password_file: testUserFile(), allow_anonymous: false });
  try {
    for (const version of [4, 5]) {
      const ok = await connack(tb, version, { username: "test", password: "test" });
      assert.equal(code(ok), 0);
      const wrongPw = await connack(tb, version, { username: "test", password: "nope" });
      const wrongUser = await connack(tb, version, { username: "nobody", password: "test" });
      const noPw = await connack(tb, version, { username: "test" });
      const expected = version === 5 ? 0x87 : 5;
      for (const p of [wrongPw, wrongUser, noPw]) {
        assert.equal(code(p), expected);
        assert.equal(p.sessionPresent, false);
      }
      // Nothing in the packet tells the causes apart (the reason string included).
      assert.deepEqual(wrongPw.properties, wrongUser.properties);
      assert.deepEqual(wrongPw.properties, noPw.properties);
    }
    // MQTT.js (from 127.0.0.1, no failures there yet) sees the refusal as an error with the code.
    await assert.rejects(
      connect(tb, { username: "test", password: "bad", protocolVersion: 5 }),
      (e: { code?: number }) => e.code === 0x87,
    );
  } finally {
    await tb.stop();
  }
});

test("allow_anonymous: false refuses clients without a user name; true lets them in beside the users", async () => {
  const closed = await startBroker({ password_file: testUserFile(), allow_anonymous: false });
  const open = await startBroker({ password_file: testUserFile(), allow_anonymous: true });
  try {
    assert.equal(code(await connack(closed, 4, {})), 5);
    assert.equal(code(await connack(closed, 5, {})), 0x87);
    assert.equal(code(await connack(open, 4, {})), 0);
    // With a password file, a user name must still be known and its password right (Mosquitto).
    assert.equal(code(await connack(open, 4, { username: "other", password: "x" })), 5);
    assert.equal(code(await connack(open, 4, { username: "test", password: "test" })), 0);
  } finally {
    await closed.stop();
    await open.stop();
  }
});

test("no password_file and allow_anonymous false: every client is refused, with or without a name", async () => {
  const tb = await startBroker({ allow_anonymous: false });
  try {
    assert.equal(code(await connack(tb, 4, {})), 5);
    assert.equal(code(await connack(tb, 4, { username: "u", password: "p" })), 5);
  } finally {
    await tb.stop();
  }
});

test("the default ('localhost') lets anonymous clients in on 127.0.0.1 only; a listener can override", async () => {
  const listener = (over: object) => ({ ...defaults(LISTENER_KEYS), ...over });
  const auth = (global: boolean | "localhost") =>
    new Auth(testConfig({ allow_anonymous: global }), new Logger(["none"]));
  const dflt = auth("localhost");
  assert.equal(dflt.anonymousAllowed(listener({ bind_address: "127.0.0.1" })), true);
  assert.equal(dflt.anonymousAllowed(listener({ bind_address: "::1" })), true);
  assert.equal(dflt.anonymousAllowed(listener({ bind_address: "localhost" })), true);
  assert.equal(dflt.anonymousAllowed(listener({ bind_address: "0.0.0.0" })), false);
  assert.equal(dflt.anonymousAllowed(listener({ bind_address: "192.0.2.1" })), false);
  assert.equal(
    dflt.anonymousAllowed(listener({ bind_address: "0.0.0.0", allow_anonymous: true })),
    true,
  );
  assert.equal(
    auth(true).anonymousAllowed(listener({ bind_address: "127.0.0.1", allow_anonymous: false })),
    false,
  );
  assert.equal(auth(false).anonymousAllowed(listener({ bind_address: "127.0.0.1" })), false);
  assert.equal(auth(true).anonymousAllowed(listener({ bind_address: "0.0.0.0" })), true);
  assert.deepEqual(
    ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "LOCALHOST", "10.0.0.1", "::"].map(
      isLoopback,
    ),
    [true, true, true, true, true, false, false],
  );

  // The built-in listener (127.0.0.1) with the default configuration: anonymous clients work.
  const tb = await startBroker();
  try {
    assert.equal(code(await connack(tb, 4, {})), 0);
  } finally {
    await tb.stop();
  }
  // The same listener with allow_anonymous = false on the listener only.
  const strict = await startBroker({
    listeners: [{ ...defaults(LISTENER_KEYS), port: 0, allow_anonymous: false }],
  });
  try {
    assert.equal(code(await connack(strict, 5, {})), 0x87);
  } finally {
    await strict.stop();
  }
});

test("repeated failed logins from one address are answered later and later; memory stays bounded", async () => {
  assert.equal(refusalDelay(1), 0, "a single typo is answered at once");
  for (let i = 2; i < 12; i++) assert.ok(refusalDelay(i + 1) >= refusalDelay(i));
  assert.ok(refusalDelay(2) > 0);
  assert.equal(refusalDelay(1000), MAX_DELAY_MS);

  const tb = await startBroker({ password_file: testUserFile(), allow_anonymous: false });
  try {
    const timed = async () => {
      const t0 = Date.now();
      const p = await connack(tb, 4, { username: "test", password: "wrong" }, "127.0.0.1");
      assert.equal(code(p), 5);
      return Date.now() - t0;
    };
    const first = await timed();
    await timed();
    const third = await timed();
    assert.ok(third > first, `third refusal (${third} ms) not later than the first (${first} ms)`);
    assert.equal(tb.broker.auth.failures("127.0.0.1"), 3);
    // A good login from the same address is not slowed down by the failures.
    const c = await connect(tb, { username: "test", password: "test" });
    await endAll(c);
  } finally {
    await tb.stop();
  }

  const auth = new Auth(testConfig({ allow_anonymous: false }), new Logger(["none"]));
  for (let i = 0; i < MAX_TRACKED_ADDRESSES + 50; i++) {
    auth.checkLogin(undefined, `10.0.${i >> 8}.${i & 255}`, undefined, undefined);
  }
  assert.equal(auth.trackedAddresses, MAX_TRACKED_ADDRESSES);
  assert.equal(auth.failures("10.0.0.0"), 0, "the oldest address was forgotten");
});

test("argon2id users log in; packets sent right after CONNECT wait for the slow check, in order", async () => {
  const hash = await hashPassword(enc("argon-pw"), { kind: "argon2id" });
  const tb = await startBroker({ password_file: file(`ann:${hash}\n`), allow_anonymous: false });
  try {
    const c = await rawConnect(tb.port, 5);
    // CONNECT, SUBSCRIBE and PUBLISH in one write: the broker must not treat the SUBSCRIBE as
    // a first packet that is not CONNECT [MQTT-3.1.0-1], and must answer them in order.
    c.send(Buffer.concat([
      mqttPacket.generate(
        connectPacket("ann-1", 5, { username: "ann", password: "argon-pw" }),
        { protocolVersion: 5 },
      ),
      mqttPacket.generate({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [{ topic: "a/b", qos: 1 }],
      }, { protocolVersion: 5 }),
      mqttPacket.generate(
        {
          cmd: "publish",
          topic: "a/b",
          payload: "hi",
          qos: 1,
          messageId: 2,
          dup: false,
          retain: false,
        },
        { protocolVersion: 5 },
      ),
    ]));
    assert.equal((await c.next("connack", 8000)).reasonCode, 0);
    assert.deepEqual((await c.next("suback")).granted, [1]);
    const got = await c.next("publish");
    assert.equal(got.payload.toString(), "hi");
    assert.deepEqual(c.packets.map((p: AnyPacket) => p.cmd).slice(0, 2), ["connack", "suback"]);
    c.close();
    assert.equal(code(await connack(tb, 5, { username: "ann", password: "argon-PW" })), 0x87);
  } finally {
    await tb.stop();
  }
});

test("reload(): a new password file takes effect; a broken one keeps the old users and names file:line", async () => {
  const lines: string[] = [];
  const path = join(dir, "reload.pw");
  writeFileSync(path, `a:${await hashPassword(enc("pa"), { iterations: 101 })}\n`);
  const tb = await startBroker({ password_file: path, allow_anonymous: false });
  const log = new Logger(["all"], { timestamp: false, sink: (l) => lines.push(l) });
  // Reload through an Auth that logs into `lines`, over the same configuration.
  const auth = new Auth(tb.broker.config, log);
  await auth.load();
  try {
    assert.equal(code(await connack(tb, 4, { username: "a", password: "pa" })), 0);
    writeFileSync(path, `b:${await hashPassword(enc("pb"), { iterations: 101 })}\n`);
    assert.equal(await tb.broker.auth.reload(), true);
    assert.equal(code(await connack(tb, 4, { username: "b", password: "pb" })), 0);
    assert.equal(code(await connack(tb, 4, { username: "a", password: "pa" })), 5);

    writeFileSync(path, `# users\nc:plain-text\nd:$7$1$AAAA$BBBB\n`);
    assert.equal(await tb.broker.auth.reload(), false);
    assert.equal(
      code(await connack(tb, 4, { username: "b", password: "pb" })),
      0,
      "old users kept",
    );
    assert.equal(await auth.reload(), false);
    assert.ok(lines.some((l) => l.includes(`${path}:2: user "c"`)), lines.join("\n"));
    assert.ok(lines.some((l) => l.includes(`${path}:3: user "d"`)), lines.join("\n"));
    assert.ok(lines.some((l) => /password_file was not reloaded/.test(l)));

    rmSync(path);
    assert.equal(await tb.broker.auth.reload(), false, "a missing file keeps the old users too");
    assert.equal(code(await connack(tb, 4, { username: "b", password: "pb" })), 0);
  } finally {
    await tb.stop();
  }
});

test("a broken password file at start-up stops the broker with file:line", async () => {
  const path = file("x:$6$short$AAAA\n");
  await assert.rejects(
    startBroker({ password_file: path }),
    (e: Error) => e.message.startsWith(`${path}:1: user "x": `),
  );
  await assert.rejects(
    startBroker({ password_file: join(dir, "missing.pw") }),
    /missing\.pw: cannot read the file \(ENOENT\)/,
  );
});
