/**
 * The web console in a real browser: headless Chromium (Debian's `chromium`, driven by
 * playwright-core) opens the console served by the HTTP listener, signs in with the admin token,
 * and checks that the message-rate chart moves while a client publishes, that a client kicked
 * from the page is disconnected, that a message published by a client appears in the page's
 * subscription (and one published from the page reaches a client), and that a retained message
 * deleted from the page is gone. Every request the page makes goes to the listener itself.
 * Without /usr/bin/chromium this test fails: it is not skipped.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { chromium, type Page } from "playwright-core";
import { endAll, testConfig, until } from "./helpers/broker.ts";
import { assembleBroker } from "../src/assemble.ts";
import { Logger } from "../src/sys/log.ts";
import { LagSampler } from "../src/sys/metrics.ts";
import { ConsoleState } from "../src/sys/console_api.ts";
import { startHttp } from "../src/sys/http.ts";

const TOKEN = "browser-token-0123456789";

/** Chromium as the project runs it: headless, no network of its own, a fresh profile. */
async function launchChromium(profile: string) {
  return await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 900 },
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
}

async function lastPoint(page: Page): Promise<{ t: number; msgIn: number; points: number }> {
  return await page.$eval("#chart-msg", (el) => {
    const d = (el as unknown as { dataset: Record<string, string | undefined> }).dataset;
    return {
      t: Number(d.lastT || 0),
      msgIn: Number((d.last || "0").split(",")[0]),
      points: Number(d.points || 0),
    };
  });
}

test(
  "web console in headless Chromium: sign in, chart moves, kick, live subscription, publish, delete retained",
  {
    timeout: 120_000,
  },
  async () => {
    const log = new Logger(["error", "warning", "notice", "information"], { sinks: [] });
    const broker = assembleBroker(
      testConfig({ admin_token: TOKEN, sys_interval: 0, persistence: false }),
      log,
    ).broker;
    const [l] = await broker.start();
    const lag = new LagSampler();
    lag.start();
    // Samples every 500 ms so that the chart has new points quickly.
    const state = new ConsoleState(broker, lag, 500);
    state.start();
    const http = await startHttp(broker, "127.0.0.1", 0, lag, state);
    const base = `http://127.0.0.1:${http.port}`;
    const url = `mqtt://127.0.0.1:${l.port}`;
    const profile = mkdtempSync(join(tmpdir(), "midge-console-chromium-"));
    const browser = await launchChromium(profile);
    const publisher = await mqtt.connectAsync(url, { clientId: "publisher", reconnectPeriod: 0 });
    const victim = await mqtt.connectAsync(url, { clientId: "kick-me", reconnectPeriod: 0 });
    const listener = await mqtt.connectAsync(url, { clientId: "listener", reconnectPeriod: 0 });
    let pump: ReturnType<typeof setInterval> | undefined;
    const foreign: string[] = [];
    try {
      const page = await browser.newPage();
      page.on("request", (r) => {
        if (!r.url().startsWith(base + "/")) foreign.push(r.url());
      });
      const violations: string[] = [];
      page.on("console", (m) => {
        if (/Content.Security.Policy/i.test(m.text())) violations.push(m.text());
      });
      await page.goto(base + "/");
      await page.fill("#token", "not-the-token-0123456789");
      await page.click("#signin button[type=submit]");
      await page.waitForSelector("#signin-error:has-text('wrong')", { timeout: 10_000 });
      assert.equal(await page.isVisible("#nav"), false, "a wrong token gets nothing");

      await page.fill("#token", TOKEN);
      await page.click("#signin button[type=submit]");
      await page.waitForSelector("#nav a[href='#overview']", { state: "visible", timeout: 10_000 });
      await page.waitForSelector("#chart-msg canvas", { timeout: 10_000 });

      // The message-rate chart moves while a client publishes.
      const before = await lastPoint(page);
      pump = setInterval(() => publisher.publish("plant/line1/temp", "21.5"), 20);
      // (A function, not a string: the console's Content-Security-Policy forbids eval.)
      const moved = await page.waitForFunction(
        (t0) => {
          const d = (globalThis as any).document.querySelector("#chart-msg").dataset;
          return Number(d.lastT || 0) > t0 && Number((d.last || "0").split(",")[0]) > 0;
        },
        before.t,
        { timeout: 30_000, polling: 200 },
      );
      assert.ok(moved);
      const during = await lastPoint(page);
      assert.ok(during.msgIn > 0, `messages in per second plotted: ${during.msgIn}`);
      await page.waitForFunction(
        (t1) => Number((globalThis as any).document.querySelector("#chart-msg").dataset.lastT) > t1,
        during.t,
        { timeout: 30_000, polling: 200 },
      );
      const later = await lastPoint(page);
      assert.ok(later.points > during.points, "new points keep arriving");
      clearInterval(pump);
      pump = undefined;

      // A client kicked from the page is disconnected.
      const closed = new Promise<void>((r) => victim.once("close", () => r()));
      await page.click("#nav a[href='#clients']");
      await page.fill("#client-search", "kick-me");
      await page.click("#clients-table tr[data-id='kick-me']", { timeout: 10_000 });
      await page.click("#client-detail button:has-text('Kick')");
      await page.click("#client-detail button:has-text('Confirm')");
      await closed;
      await until(() => !broker.sessions.get("kick-me")?.connection, 5000, "kick-me gone");

      // A message published by a client appears in the page's subscription.
      await page.click("#nav a[href='#messages']");
      await page.fill("#sub-filter", "browser/#");
      await page.click("#sub-go");
      await page.waitForSelector("#sub-status:has-text('subscribed to browser/#')", {
        timeout: 10_000,
      });
      await listener.publishAsync("browser/hello", "hi from an MQTT client", { qos: 1 });
      await listener.publishAsync("elsewhere", "not for the page", { qos: 1 });
      const msg = await page.waitForSelector(".msg[data-topic='browser/hello']", {
        timeout: 10_000,
      });
      assert.match(await msg.innerText(), /hi from an MQTT client/);
      assert.equal(await page.$(".msg[data-topic='elsewhere']"), null);

      // A message published from the page reaches a client.
      await listener.subscribeAsync("from/page", { qos: 1 });
      const got = new Promise<string>((r) => listener.on("message", (_t, p) => r(p.toString())));
      await page.fill("#pub-topic", "from/page");
      await page.fill("#pub-payload", "hello from the console");
      await page.selectOption("#pub-qos", "1");
      await page.click("#pub-go");
      assert.equal(await got, "hello from the console");

      // A retained message deleted from the page is gone.
      await listener.publishAsync("keep/this", "retained value", { qos: 1, retain: true });
      await page.click("#nav a[href='#topics']");
      await page.click("#retained-list tr[data-topic='keep/this']", { timeout: 10_000 });
      await page.waitForSelector("#retained-view pre:has-text('retained value')");
      await page.click("#retained-view button:has-text('Delete')");
      await page.click("#retained-view button:has-text('Confirm')");
      await until(
        () => broker.retained.match("keep/this", Date.now()).length === 0,
        10_000,
        "retained message deleted",
      );
      await page.waitForSelector("#retained-list tr[data-topic='keep/this']", {
        state: "detached",
        timeout: 10_000,
      });
      // A new subscriber gets no retained message for it.
      const fresh = await mqtt.connectAsync(url, { clientId: "fresh", reconnectPeriod: 0 });
      let retainedSeen = false;
      fresh.on("message", () => (retainedSeen = true));
      await fresh.subscribeAsync("keep/this", { qos: 1 });
      await fresh.publishAsync("sync/done", "x", { qos: 1 });
      await endAll(fresh);
      assert.equal(retainedSeen, false);

      assert.deepEqual(foreign, [], "no request to any other host");
      assert.deepEqual(violations, [], "nothing the Content-Security-Policy had to block");
    } finally {
      if (pump) clearInterval(pump);
      await endAll(publisher, victim, listener);
      await browser.close();
      await http.close();
      state.stop();
      lag.stop();
      await broker.stop();
      rmSync(profile, { recursive: true, force: true });
    }
  },
);

test(
  "web console in headless Chromium: signed in as a dynamic-security admin, creates and deletes a client (mosquitto_ctrl's file)",
  {
    timeout: 60_000,
  },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "midge-console-dynsec-"));
    const file = join(dir, "dynamic-security.json");
    execFileSync("mosquitto_ctrl", ["dynsec", "init", file, "admin", "admin-pw"]);
    const broker = assembleBroker(
      testConfig({
        admin_token: TOKEN,
        sys_interval: 0,
        allow_anonymous: false,
        plugins: [{ name: "dynamic-security", config_file: file }],
      }),
    ).broker;
    const [l] = await broker.start();
    const url = `mqtt://127.0.0.1:${l.port}`;
    const state = new ConsoleState(broker);
    const http = await startHttp(broker, "127.0.0.1", 0, undefined, state);
    const profile = mkdtempSync(join(tmpdir(), "midge-console-chromium-"));
    const browser = await launchChromium(profile);
    const login = (username: string, password: string) =>
      mqtt.connectAsync(url, { username, password, reconnectPeriod: 0, connectTimeout: 5000 })
        .then(async (c) => {
          await c.endAsync();
          return "accepted";
        }, (e: Error) => `refused: ${e.message}`);
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${http.port}/#security`);
      await page.waitForSelector("#username", { state: "visible", timeout: 10_000 });
      await page.fill("#username", "admin");
      await page.fill("#password", "admin-pw");
      await page.click("#signin button[type=submit]");
      await page.waitForSelector("#who:has-text('signed in as admin')", { timeout: 10_000 });
      await page.waitForSelector("#dynsec-clients td:has-text('admin')", { timeout: 10_000 });
      assert.match(await page.innerText("#dynsec-roles"), /admin/);

      await page.fill("input[placeholder='user name']", "dave");
      await page.fill("input[placeholder='password']", "dave-pw");
      await page.click("button:has-text('Create client')");
      await page.waitForSelector("#dynsec-clients td:has-text('dave')", { timeout: 10_000 });
      assert.equal(await login("dave", "dave-pw"), "accepted");

      const dave = page.locator("#dynsec-clients tr", { hasText: "dave" });
      await dave.locator("button:has-text('Delete')").click();
      await dave.locator("button:has-text('Confirm')").click();
      await page.waitForSelector("#dynsec-clients td:has-text('dave')", {
        state: "detached",
        timeout: 10_000,
      });
      assert.match(await login("dave", "dave-pw"), /^refused/);
    } finally {
      await browser.close();
      await http.close();
      state.stop();
      await broker.stop();
      rmSync(profile, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
