// Broker memory under hostile SUBSCRIBEs, as resident set size (RSS) of a broker process:
//   1. a 10 MB retained message, then one SUBSCRIBE listing "#" 30 times from a client that never
//      reads; then that client closes its socket;
//   2. subscription storms: a client sends 50,000 filters (10,000 are granted with the default
//      max_subscriptions_per_client), then leaves; five times (or [storms]), each storm's filters of other
//      lengths than the last.
// Run: node scripts/build-wasm.mjs, then
//   bun bench/subscribe_memory.ts [storms]   |   deno run -A bench/subscribe_memory.ts [storms]
// The broker runs as a child process of the same runtime (`serve -p 0`, persistence off). RSS is
// read from /proc (Linux only), 3 s after each step, so it includes garbage not yet collected.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";

const storms = Number(process.argv[2] ?? 5);
const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
const dir = mkdtempSync(join(tmpdir(), "midge-submem-"));
const cfg = join(dir, "midge.toml");
writeFileSync(cfg, "max_packet_size = 12000000\npersistence = false\n");
const main = new URL("../src/main.ts", import.meta.url).pathname;
const args = isBun ? [main, "serve", "-c", cfg, "-p", "0"] : [
  "run",
  "-A",
  main,
  "serve",
  "-c",
  cfg,
  "-p",
  "0",
];
const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
const port = await new Promise<number>((resolve, reject) => {
  let text = "";
  const look = (d: Buffer) => {
    text += d.toString();
    const m = text.match(/listening mqtt on [^\s]+:(\d+)/);
    if (m) resolve(Number(m[1]));
  };
  child.stdout!.on("data", look);
  child.stderr!.on("data", look);
  child.on("exit", () => reject(new Error(`broker exited: ${text}`)));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function rssMB(): number {
  const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
  return Number(status.match(/VmRSS:\s+(\d+)/)![1]) / 1024;
}
const rows: [string, number][] = [];
async function record(step: string): Promise<void> {
  await sleep(3000);
  rows.push([step, rssMB()]);
}

/** A connected client that has sent CONNECT; `packets` collects what it reads (unless paused). */
function client(id: string): Promise<{ s: Socket; acks: number }> {
  return new Promise((resolve) => {
    const c = { s: connect(port, "127.0.0.1"), acks: 0 };
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on("packet", (p: { cmd: string }) => {
      if (p.cmd === "suback") c.acks++;
    });
    c.s.on("data", (d: Buffer) => parser.parse(d));
    c.s.on("error", () => {});
    c.s.on("connect", () => {
      c.s.write(mqttPacket.generate({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clean: true,
        clientId: id,
        keepalive: 60,
      }));
      resolve(c);
    });
  });
}

try {
  await record("baseline");
  const pub = await client("publisher");
  pub.s.write(mqttPacket.generate({
    cmd: "publish",
    topic: "big",
    payload: Buffer.alloc(10_000_000, 1),
    qos: 0,
    retain: true,
    dup: false,
  }));
  await record("10 MB retained");
  const idle = await client("never-reads");
  idle.s.pause();
  idle.s.write(mqttPacket.generate({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: Array.from({ length: 30 }, () => ({ topic: "#", qos: 0 })),
  }));
  await record('SUBSCRIBE "#" × 30, client not reading');
  idle.s.destroy();
  await record("that client closed");
  for (let round = 1; round <= storms; round++) {
    const c = await client(`storm${round}`);
    for (let p = 0; p < 10; p++) {
      c.s.write(mqttPacket.generate({
        cmd: "subscribe",
        messageId: p + 1,
        subscriptions: Array.from({ length: 5000 }, (_, i) => ({
          topic: `storm/${"l".repeat((i * 7 + round * 29) % 40)}/${p}/${i}/+/${
            "t".repeat((round * 13) % 17)
          }`,
          qos: 1 as const,
        })),
      }));
    }
    const deadline = Date.now() + 60_000;
    while (c.acks < 10 && Date.now() < deadline) await sleep(50);
    c.s.destroy();
    await record(`storm ${round} (50,000 filters) and its client gone`);
  }
  pub.s.destroy();
  const runtime = isBun
    ? `Bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}`
    : `Deno ${
      (globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno
    }`;
  console.log(`# broker RSS under hostile SUBSCRIBEs, ${runtime}`);
  console.log("| step | broker RSS MB |");
  console.log("|---|---:|");
  for (const [step, mb] of rows) console.log(`| ${step} | ${mb.toFixed(0)} |`);
} finally {
  child.kill();
  rmSync(dir, { recursive: true, force: true });
}
