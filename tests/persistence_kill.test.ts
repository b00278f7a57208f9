/**
 * The durability promise under fire: the broker process is killed with SIGKILL at random moments
 * while QoS 1 and QoS 2 messages flow, then restarted. Every message the broker acknowledged must
 * reach the persistent subscriber; QoS 2 messages never twice.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { sleep } from "./helpers/broker.ts";

const runtime = process.env.MIDGE_TEST_RUNTIME === "deno" ? "deno" : "bun";
const root = new URL("..", import.meta.url).pathname;

/** Start `midge serve` in a child process; resolves with the port once it listens. */
function startMidge(config: string, port: number): Promise<{ child: ChildProcess; port: number }> {
  const bin = join(root, "node_modules", ".bin", runtime);
  const args = runtime === "deno"
    ? ["run", "-A", join(root, "src/main.ts"), "serve", "-c", config, "-p", String(port)]
    : [join(root, "src/main.ts"), "serve", "-c", config, "-p", String(port)];
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`broker did not start: ${out}`)), 20000);
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening mqtt on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.stderr!.on("data", (d) => (out += d));
    child.on("exit", (code) => reject(new Error(`broker exited ${code}: ${out}`)));
  });
}

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

/** Deterministic PRNG so a failure can be replayed. */
function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("SIGKILL at random moments loses no acknowledged QoS 1/2 message and duplicates no QoS 2", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-kill-"));
  const config = join(dir, "midge.toml");
  writeFileSync(
    config,
    `persistence = true\npersistence_location = ${
      JSON.stringify(dir)
    }\nconnection_messages = false\n` +
      `max_queued_messages = 0\n[[listener]]\nport = 0\n`,
  );
  const rand = mulberry32(20261122);
  let broker = await startMidge(config, 0);
  const url = `mqtt://127.0.0.1:${broker.port}`;
  const opts = { reconnectPeriod: 100, connectTimeout: 2000, clean: false, queueQoSZero: false };
  const clients: MqttClient[] = [];
  try {
    const sub = mqtt.connect(url, { ...opts, clientId: "kill-sub" });
    clients.push(sub);
    const received = { 1: new Map<string, number>(), 2: new Map<string, number>() };
    sub.on("message", (_t, payload, packet) => {
      const m = received[packet.qos as 1 | 2];
      if (!m) return;
      const k = payload.toString();
      m.set(k, (m.get(k) ?? 0) + 1);
    });
    await new Promise<void>((r) => sub.once("connect", () => r()));
    await sub.subscribeAsync("kill/#", { qos: 2 });

    const acked = { 1: new Set<string>(), 2: new Set<string>() };
    let running = true;
    const publisher = (qos: 1 | 2) => {
      const c = mqtt.connect(url, { ...opts, clientId: `kill-pub${qos}` });
      clients.push(c);
      let n = 0;
      const loop = async () => {
        while (running) {
          if (!c.connected) {
            await sleep(20);
            continue;
          }
          const id = `q${qos}-${n++}`;
          // Acknowledged = the publish callback reports success (PUBACK / PUBCOMP).
          c.publish(`kill/${qos}`, id, { qos }, (err) => {
            if (!err) acked[qos].add(id);
          });
          await sleep(2);
        }
      };
      return loop();
    };
    const loops = [publisher(1), publisher(2)];

    for (let round = 0; round < 4; round++) {
      await sleep(300 + Math.floor(rand() * 700));
      await kill9(broker.child);
      await sleep(Math.floor(rand() * 200));
      broker = await startMidge(config, broker.port);
    }
    await sleep(300);
    running = false;
    await Promise.all(loops);

    // Wait for every acknowledged message to arrive.
    const deadline = Date.now() + 20000;
    const missing = () =>
      [...acked[1]].filter((id) => !received[1].has(id)).concat(
        [...acked[2]].filter((id) => !received[2].has(id)),
      );
    while (missing().length && Date.now() < deadline) await sleep(100);
    assert.ok(
      acked[1].size > 50 && acked[2].size > 50,
      `load too small: ${acked[1].size}/${acked[2].size}`,
    );
    assert.deepEqual(missing(), [], "acknowledged messages lost");
    const dup2 = [...received[2]].filter(([, n]) => n > 1).map(([k]) => k);
    assert.deepEqual(dup2, [], "QoS 2 messages delivered twice");
  } finally {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
    await kill9(broker.child).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
});
