/**
 * What a client may write into `$SYS`, checked against real Mosquitto (Debian's package): the
 * same publishes and wills get the same answers from both brokers. Mosquitto must be installed
 * (.ci/run installs it); without it this test fails.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { Buffer } from "node:buffer";
import { freePort, sleep, startBroker } from "./helpers/broker.ts";
import { connectPacket, type RawClient, rawConnect } from "./helpers/raw.ts";

const MOSQUITTO = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => existsSync(p));

/** Debian's mosquitto on a free loopback port; `stop` ends it. */
async function startMosquitto(): Promise<{ port: number; stop(): Promise<void> }> {
  assert.ok(MOSQUITTO, "mosquitto is not installed (apt-get install mosquitto)");
  const dir = mkdtempSync(join(tmpdir(), "midge-mosq-sys-"));
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  // As root, mosquitto would switch to the "mosquitto" user: run as whoever runs the test.
  const user = process.getuid?.() === 0 ? "root" : userInfo().username;
  writeFileSync(conf, `user ${user}\nallow_anonymous true\nlistener ${port} 127.0.0.1\n`);
  const child: ChildProcess = spawn(MOSQUITTO, ["-c", conf], { stdio: "ignore" });
  const end = Date.now() + 5000;
  for (;;) {
    try {
      (await rawConnect(port, 5)).close();
      break;
    } catch {
      if (Date.now() > end || child.exitCode !== null) throw new Error("mosquitto did not start");
      await sleep(30);
    }
  }
  return {
    port,
    stop: () =>
      new Promise((resolve) => {
        const done = () => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (child.exitCode !== null) return done();
        child.once("exit", done);
        child.kill("SIGTERM");
      }),
  };
}

const DENIED = [
  "$SYS/x",
  "$SYS/broker/connection/a/b/state",
  "$SYS/broker/connection/a",
  "$SYS/broker/connection/a/status",
];
const ALLOWED = "$SYS/broker/connection/peer/state";

/**
 * Against the broker on `port`: the PUBACK reason code of each publish, and the will topics a
 * watcher receives when one client leaves with a will on $SYS/foo and then another with a will
 * on a bridge state topic.
 */
async function sysRules(port: number): Promise<{ codes: Record<string, number>; wills: string[] }> {
  const open = async (id: string, extra = {}): Promise<RawClient> => {
    const rc = await rawConnect(port, 5);
    rc.send(connectPacket(id, 5, extra));
    assert.equal((await rc.next("connack")).reasonCode, 0);
    return rc;
  };
  const pub = await open("sys-pub");
  const codes: Record<string, number> = {};
  let id = 0;
  for (const topic of [...DENIED, ALLOWED]) {
    pub.send({ cmd: "publish", topic, payload: "1", qos: 1, messageId: ++id });
    codes[topic] = (await pub.next("puback")).reasonCode ?? 0;
  }
  pub.close();

  const watcher = await open("sys-watch");
  watcher.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [
      { topic: "$SYS/foo", qos: 1 },
      { topic: "$SYS/broker/connection/+/state", qos: 1 },
    ],
  });
  await watcher.next("suback");
  for (const topic of ["$SYS/foo", "$SYS/broker/connection/c/state"]) {
    const w = await open(`will-${topic.length}`, {
      will: { topic, payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    // v5 0x04: disconnect with the will; once the broker has closed, the will is out.
    w.send({ cmd: "disconnect", reasonCode: 0x04 });
    await w.closed;
  }
  const last = await watcher.next("publish", 5000);
  const wills = watcher.packets.filter((p) => p.cmd === "publish").map((p) => p.topic);
  assert.equal(last.topic, wills[wills.length - 1]);
  watcher.close();
  return { codes, wills };
}

test("$SYS writes and wills get the answers Mosquitto gives: only $SYS/broker/connection/+/state", async () => {
  const mosq = await startMosquitto();
  const tb = await startBroker();
  try {
    const theirs = await sysRules(mosq.port);
    const ours = await sysRules(tb.port);
    for (const t of DENIED) {
      assert.equal(theirs.codes[t], 0x87, `Mosquitto on ${t}`);
      assert.equal(ours.codes[t], theirs.codes[t], t);
    }
    assert.ok(theirs.codes[ALLOWED] < 0x80, `Mosquitto on ${ALLOWED}: ${theirs.codes[ALLOWED]}`);
    assert.ok(ours.codes[ALLOWED] < 0x80, `Midge on ${ALLOWED}: ${ours.codes[ALLOWED]}`);
    assert.deepEqual(theirs.wills, ["$SYS/broker/connection/c/state"]);
    assert.deepEqual(ours.wills, theirs.wills);
  } finally {
    await tb.stop();
    await mosq.stop();
  }
});
