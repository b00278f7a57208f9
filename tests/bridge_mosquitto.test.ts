/**
 * Bridges between Midge and Mosquitto (Debian's package), in both directions, and over TLS.
 * Mosquitto must be installed (.ci/run installs it); without it these tests fail.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir, userInfo } from "node:os";
import process from "node:process";
import { join } from "node:path";
import {
  bridgeTo,
  collect,
  connect,
  endAll,
  freePort,
  sleep,
  startBroker,
  type TestBroker,
  until,
} from "./helpers/broker.ts";
import { makeCerts } from "./helpers/certs.ts";

const MOSQUITTO = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => existsSync(p));

interface Mosquitto {
  port: number;
  tb: TestBroker;
  stop(): Promise<void>;
}

/** Run Debian's mosquitto with `extra` config lines on a free port. */
async function startMosquitto(extra: string, listener = ""): Promise<Mosquitto> {
  assert.ok(MOSQUITTO, "mosquitto is not installed (apt-get install mosquitto)");
  const dir = mkdtempSync(join(tmpdir(), "midge-mosq-"));
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  writeFileSync(
    conf,
    // Run as the current user (as root, mosquitto would switch to "mosquitto" and lose the temp files).
    `user ${runAs()}\nper_listener_settings false\nallow_anonymous true\nlistener ${port} 127.0.0.1\n${listener}\n${extra}\n`,
  );
  const child: ChildProcess = spawn(MOSQUITTO, ["-c", conf], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const end = Date.now() + 5000;
  while (!(await canConnect(port))) {
    if (Date.now() > end || child.exitCode !== null) {
      throw new Error(`mosquitto did not start: ${err}`);
    }
    await sleep(30);
  }
  const tb = { port, url: `mqtt://127.0.0.1:${port}` } as TestBroker;
  return {
    port,
    tb,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        });
        child.kill("SIGTERM");
      }),
  };
}

/** The user mosquitto should run as: this process's own (root stays root). */
function runAs(): string {
  if (process.getuid?.() === 0) return "root";
  return userInfo().username;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: "127.0.0.1" }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

for (const version of ["mqttv311", "mqttv50"] as const) {
  test(`Midge→Mosquitto bridge (${version}): out and in at QoS 1 and 2 with prefixes`, async () => {
    const mq = await startMosquitto("");
    const local = await startBroker({
      bridges: [bridgeTo(mq.port, ["up/# out 2 edge/ site1/", "down/# in 2 edge/ site1/"], {
        name: "tomq",
        bridge_protocol_version: version,
      })],
    });
    try {
      await until(
        () => local.bridges!.bridges.get("tomq")?.client?.connected === true,
        5000,
        "link",
      );
      const msub = await connect(mq.tb);
      const mg = collect(msub);
      await msub.subscribeAsync("site1/up/#", { qos: 2 });
      const lsub = await connect(local);
      const lg = collect(lsub);
      await lsub.subscribeAsync("edge/down/#", { qos: 2 });
      const lpub = await connect(local);
      const mpub = await connect(mq.tb);
      await lpub.publishAsync("edge/up/t", "q1", { qos: 1 });
      await lpub.publishAsync("edge/up/t", "q2", { qos: 2 });
      await mpub.publishAsync("site1/down/c", "c1", { qos: 1 });
      await mpub.publishAsync("site1/down/c", "c2", { qos: 2 });
      const a = await mg.next(2);
      const b = await lg.next(2);
      assert.deepEqual(a.map((m) => [m.topic, m.payload]), [["site1/up/t", "q1"], [
        "site1/up/t",
        "q2",
      ]]);
      assert.deepEqual(b.map((m) => [m.topic, m.payload]).sort(), [["edge/down/c", "c1"], [
        "edge/down/c",
        "c2",
      ]]);
      await sleep(300);
      assert.equal(mg.messages.length, 2, "no echo");
      assert.equal(lg.messages.length, 2, "no echo");
      await endAll(msub, lsub, lpub, mpub);
    } finally {
      await local.stop();
      await mq.stop();
    }
  });
}

test("Mosquitto→Midge bridge on # both ways (try_private): messages pass, nothing loops", async () => {
  const midge = await startBroker();
  const mq = await startMosquitto(
    `connection tomidge\naddress 127.0.0.1:${midge.port}\ntopic # both 1\ntry_private true\n` +
      `bridge_protocol_version mqttv311\nnotifications false\nrestart_timeout 1\n`,
  );
  try {
    // Wait for Mosquitto's bridge to connect to Midge.
    await until(
      () => [...midge.broker.connections].some((c) => c.terms.bridgeMode),
      8000,
      "mosquitto's bridge",
    );
    const sm = await connect(midge);
    const sq = await connect(mq.tb);
    const gm = collect(sm);
    const gq = collect(sq);
    await sm.subscribeAsync("ping/#", { qos: 1 });
    await sq.subscribeAsync("ping/#", { qos: 1 });
    await sleep(300);
    const pm = await connect(midge);
    const pq = await connect(mq.tb);
    await pm.publishAsync("ping/midge", "m", { qos: 1 });
    await pq.publishAsync("ping/mosq", "q", { qos: 1 });
    await gm.next(2, 5000);
    await gq.next(2, 5000);
    await sleep(500);
    assert.deepEqual(gm.messages.map((m) => m.payload).sort(), ["m", "q"]);
    assert.deepEqual(gq.messages.map((m) => m.payload).sort(), ["m", "q"]);
    await endAll(sm, sq, pm, pq);
  } finally {
    await mq.stop();
    await midge.stop();
  }
});

test("Midge→Mosquitto bridge over TLS (bridge_cafile) carries messages", async () => {
  const certs = makeCerts();
  const tlsPort = await freePort();
  const mq = await startMosquitto(
    "",
    `listener ${tlsPort} 127.0.0.1\ncafile ${certs.caCert}\ncertfile ${certs.serverCert}\nkeyfile ${certs.serverKey}\n`,
  );
  const local = await startBroker({
    bridges: [bridgeTo(tlsPort, ["secure/# out 1"], { name: "tomq", bridge_cafile: certs.caCert })],
  });
  try {
    await until(
      () => local.bridges!.bridges.get("tomq")?.client?.connected === true,
      5000,
      "TLS link",
    );
    const msub = await connect(mq.tb);
    const g = collect(msub);
    await msub.subscribeAsync("secure/#", { qos: 1 });
    const pub = await connect(local);
    await pub.publishAsync("secure/x", "over tls", { qos: 1 });
    const [m] = await g.next(1);
    assert.equal(m.payload, "over tls");
    await endAll(msub, pub);
  } finally {
    await local.stop();
    await mq.stop();
    certs.cleanup();
  }
});
