/**
 * Where a cluster node's time goes per message, piece by piece, in this process's CPU time
 * (process.cpuUsage): the envelope and subject of a forwarded message, a core NATS publish, a
 * core NATS receive, and JetStream publishes with many in flight (what QoS 1/2 between nodes
 * costs). Starts one nats-server with JetStream on a free port (needs `nats-server`).
 *
 *   bun bench/cluster_path.ts [messages]        deno run -A bench/cluster_path.ts [messages]
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { connect } from "@nats-io/transport-node";
import { headers } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import {
  decodeEnvelope,
  encodeBatch,
  encodeEnvelope,
  splitBatch,
} from "../src/cluster/envelope.ts";
import { topicSubject } from "../src/cluster/subject.ts";
import type { Message } from "../src/broker/message.ts";

const N = Number(process.argv[2] ?? 200_000);
const JS_N = Math.min(N, 50_000);

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

function report(what: string, n: number, us: number, wallMs?: number): void {
  const rate = wallMs ? `, ${Math.round(n / (wallMs / 1000)).toLocaleString("en-US")} /s` : "";
  console.log(`${what.padEnd(52)} ${(us / n).toFixed(2).padStart(6)} µs CPU per message${rate}`);
}

const msg: Message = {
  topic: "bench/pair/7",
  payload: new Uint8Array(64),
  qos: 0,
  retain: false,
  expiresAt: 0,
  origin: "mbxp7",
};

// 1. Envelope + subject (what forward() does before the NATS client).
let t = cpuUs();
let keep = 0;
for (let i = 0; i < N; i++) {
  const s = topicSubject("bench.d.m", msg.topic);
  const e = encodeEnvelope(msg, 1, i, true);
  keep += e.length + (s?.length ?? 0);
}
report("encodeEnvelope + topicSubject", N, cpuUs() - t);
const env = encodeEnvelope(msg, 1, 1, true);
t = cpuUs();
for (let i = 0; i < N; i++) keep += decodeEnvelope(env, null).msg.payload.length;
report("decodeEnvelope", N, cpuUs() - t);

const dir = mkdtempSync(join(tmpdir(), "midge-cluster-path-"));
const port = await freePort();
const server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
  stdio: "ignore",
});
try {
  const opts = { servers: `127.0.0.1:${port}`, waitOnFirstConnect: true };
  const pub = await connect(opts);
  const sub = await connect(opts);
  const subject = topicSubject("bench.d.m", msg.topic)!;

  // 2. Core publish alone (nobody subscribed).
  await pub.flush();
  t = cpuUs();
  let w = performance.now();
  for (let i = 0; i < N; i++) {
    pub.publish(subject, env);
    if ((i & 1023) === 1023) await pub.flush();
  }
  await pub.flush();
  report("core NATS publish (nats.js)", N, cpuUs() - t, performance.now() - w);

  // 3. Publish and receive in this process: the difference is the receive side.
  let got = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  sub.subscribe(subject, {
    callback: (_e, m) => {
      keep += m.data.length;
      if (++got === N) done();
    },
  });
  await sub.flush();
  t = cpuUs();
  w = performance.now();
  for (let i = 0; i < N; i++) {
    pub.publish(subject, env);
    // Keep the subscriber within reach (a slow consumer would be cut off).
    if ((i & 1023) === 1023) {
      await pub.flush();
      while (got < i - 20_000) await new Promise((r) => setTimeout(r, 1));
    }
  }
  await all;
  report(
    "core NATS publish + receive (nats.js, same process)",
    N,
    cpuUs() - t,
    performance.now() - w,
  );

  // 3b. The same through batches of 50 envelopes (what the fabric sends for a burst of QoS 0
  // messages on one subject), per message: batch built, published, received and split.
  const B = 50;
  const bsubject = subject + ".b";
  let bgot = 0;
  let bdone!: () => void;
  const ball = new Promise<void>((r) => (bdone = r));
  const parts = Array.from({ length: B }, () => env);
  sub.subscribe(bsubject, {
    callback: (_e, m) => {
      for (const e of splitBatch(m.data)) keep += e.length;
      bgot += B;
      if (bgot >= N) bdone();
    },
  });
  await sub.flush();
  t = cpuUs();
  w = performance.now();
  for (let i = 0; i < N; i += B) {
    pub.publish(bsubject, encodeBatch(parts, B * env.length));
    if ((i / B & 63) === 63) {
      await pub.flush();
      while (bgot < i - 20_000) await new Promise((r) => setTimeout(r, 1));
    }
  }
  await ball;
  report(
    `core NATS publish + receive, batches of ${B} (same process)`,
    N,
    cpuUs() - t,
    performance.now() - w,
  );

  // 4. JetStream publishes, many in flight (QoS 1/2 between nodes).
  const jsm = await jetstreamManager(pub);
  await jsm.streams.add({ name: "path", subjects: ["bench.d.q.>"] });
  const js = jetstream(pub);
  const qsubject = topicSubject("bench.d.q", msg.topic)!;
  for (const inflight of [1, 64, 256, 1024]) {
    const n = inflight === 1 ? Math.min(JS_N, 3000) : JS_N;
    t = cpuUs();
    w = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: inflight }, async () => {
      while (next < n) {
        const i = next++;
        await js.publish(qsubject, env, { msgID: `p-${inflight}-${i}` });
      }
    }));
    report(
      `JetStream publish, ${inflight} in flight (R1, file)`,
      n,
      cpuUs() - t,
      performance.now() - w,
    );
  }
  // 5. The same stores without the JetStream client: a core publish with a Nats-Msg-Id header
  // and a reply subject under one inbox subscription, acknowledgements matched by token.
  for (const inflight of [256, 1024]) {
    const inbox = `_INBOX.path${inflight}`;
    let acked = 0, sent = 0;
    let finished!: () => void;
    const over = new Promise<void>((r) => (finished = r));
    let wake: (() => void) | null = null;
    pub.subscribe(`${inbox}.*`, {
      callback: (_e, m) => {
        if (m.data.length && m.data[2] === 0x65 /* {"error" */) throw new Error("store failed");
        acked++;
        if (acked === JS_N) finished();
        if (wake) {
          const w = wake;
          wake = null;
          w();
        }
      },
    });
    await pub.flush();
    t = cpuUs();
    w = performance.now();
    while (sent < JS_N) {
      if (sent - acked >= inflight) {
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      const h = headers();
      h.set("Nats-Msg-Id", `r-${inflight}-${sent}`);
      pub.publish(qsubject, env, { reply: `${inbox}.${sent}`, headers: h });
      sent++;
    }
    await over;
    report(
      `core publish + reply inbox, ${inflight} in flight (R1)`,
      JS_N,
      cpuUs() - t,
      performance.now() - w,
    );
  }
  await pub.close();
  await sub.close();
} finally {
  server.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
if (keep === -1) console.log(keep);
