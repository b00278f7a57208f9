/**
 * A real browser: MQTT.js's browser bundle in headless Chromium (Debian's `chromium`, driven by
 * playwright-core; .ci/run installs it) publishes and subscribes over a WebSocket listener that
 * only admits the page's origin. Without /usr/bin/chromium this test fails: it is not skipped.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { chromium } from "playwright-core";
import { endAll } from "./helpers/broker.ts";
import { brokerWith } from "./helpers/listeners.ts";

const bundle = readFileSync(new URL("../node_modules/mqtt/dist/mqtt.min.js", import.meta.url));

const PAGE = `<!doctype html><meta charset="utf-8"><title>midge</title>
<script src="/mqtt.min.js"></script>
<script>
  // Subscribe to browser/in, announce readiness on browser/out, resolve with the first message.
  window.run = (url, clientId) => new Promise((resolve) => {
    const c = mqtt.connect(url, { clientId, reconnectPeriod: 0, connectTimeout: 5000 });
    c.on("error", (e) => resolve("error: " + e.message));
    c.on("close", () => resolve("closed"));
    c.on("connect", () => {
      c.subscribe("browser/in", { qos: 1 }, (err) => {
        if (err) return resolve("suback error: " + err.message);
        c.publish("browser/out", "ready from " + clientId, { qos: 1 });
      });
    });
    c.on("message", (topic, payload) => {
      resolve(topic + "=" + new TextDecoder().decode(payload));
      c.end();
    });
  });
</script>`;

test("headless Chromium: MQTT.js browser bundle over ws:// publishes and subscribes", {
  timeout: 60_000,
}, async () => {
  const http = createServer((req, res) => {
    if (req.url === "/mqtt.min.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(bundle);
    } else {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(PAGE);
    }
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", () => r()));
  const origin = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const tb = await brokerWith([
    { protocol: "websockets", websockets_origin: [origin] },
    { protocol: "websockets", websockets_origin: ["https://elsewhere.example"] },
    {},
  ]);
  const profile = mkdtempSync(join(tmpdir(), "midge-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const node = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.ports[2]}`, { reconnectPeriod: 0 });
  try {
    // The Node-side client answers the browser's "ready" on the browser's topic.
    await node.subscribeAsync("browser/out", { qos: 1 });
    const ready = new Promise<string>((resolve) =>
      node.on("message", (_t, p) => {
        resolve(p.toString());
        node.publish("browser/in", "hello browser", { qos: 1 });
      })
    );
    const page = await browser.newPage();
    await page.goto(origin + "/");
    const got = await page.evaluate(
      ([url, id]) =>
        (globalThis as unknown as { run(u: string, i: string): Promise<string> }).run(url, id),
      [`ws://127.0.0.1:${tb.ports[0]}/mqtt`, "chromium-1"],
    );
    assert.equal(await ready, "ready from chromium-1");
    assert.equal(got, "browser/in=hello browser");

    // A listener that admits another origin refuses this page.
    const refused = await page.evaluate(
      ([url, id]) =>
        (globalThis as unknown as { run(u: string, i: string): Promise<string> }).run(url, id),
      [`ws://127.0.0.1:${tb.ports[1]}/mqtt`, "chromium-2"],
    );
    assert.match(refused, /^(error|closed)/);
  } finally {
    await endAll(node);
    await browser.close();
    await tb.stop();
    await new Promise<void>((r) => http.close(() => r()));
    rmSync(profile, { recursive: true, force: true });
  }
});
