/**
 * Mosquitto's http_dir on a websockets listener: plain HTTP GETs get files from the directory
 * (index.html for "/", nothing outside it), while WebSocket upgrades on the same port carry MQTT.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { defaults, LISTENER_KEYS } from "../src/config/schema.ts";
import { startBroker } from "./helpers/broker.ts";

const dir = mkdtempSync(join(tmpdir(), "midge-httpdir-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Sends one raw HTTP request and returns the whole response text. */
function http(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ port, host: "127.0.0.1" }, () => s.write(request));
    let text = "";
    s.on("data", (d) => (text += d));
    s.on("error", reject);
    s.on("close", () => resolve(text));
    setTimeout(() => s.destroy(), 10000);
  });
}

test("http_dir: GET serves files (index.html for /), never outside the directory; MQTT over WebSocket still works", async () => {
  const www = join(dir, "www");
  mkdirSync(join(www, "js"), { recursive: true });
  writeFileSync(join(www, "index.html"), "<h1>dashboard</h1>");
  writeFileSync(join(www, "js", "app.js"), "console.log(1)");
  writeFileSync(join(dir, "secret.txt"), "do not serve");
  const tb = await startBroker({
    allow_anonymous: true,
    listeners: [{
      ...defaults(LISTENER_KEYS),
      port: 0,
      protocol: "websockets",
      websockets_path: "*",
      http_dir: www,
    }],
  });
  try {
    const get = (path: string) => http(tb.port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    let r = await get("/");
    assert.match(r, /^HTTP\/1\.1 200 /);
    assert.match(r, /content-type: text\/html/i);
    assert.ok(r.endsWith("<h1>dashboard</h1>"), r);
    r = await get("/js/app.js");
    assert.match(r, /^HTTP\/1\.1 200 /);
    assert.match(r, /content-type: text\/javascript/i);
    assert.ok(r.endsWith("console.log(1)"), r);
    r = await get("/missing.html");
    assert.match(r, /^HTTP\/1\.1 404 /);
    for (const escape of ["/../secret.txt", "/%2e%2e/secret.txt", "/js/%2e%2e/%2e%2e/secret.txt"]) {
      r = await get(escape);
      assert.doesNotMatch(r, /do not serve/, escape);
      assert.match(r, /^HTTP\/1\.1 (403|404|400) /, escape);
    }
    const c = await mqtt.connectAsync(`ws://127.0.0.1:${tb.port}/`, { reconnectPeriod: 0 });
    await c.endAsync();
  } finally {
    await tb.stop();
  }
});
