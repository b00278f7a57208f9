// Takes the screenshots of the web console shown in the README (docs/console-*.png): starts a
// broker (bun src/main.ts serve) with the console, a password file and an ACL file, connects a
// few dozen MQTT.js clients that subscribe and publish (JSON, text and binary payloads, retained
// messages, offline persistent sessions), waits for the overview's charts to fill, then signs in
// with headless Chromium (playwright-core, /usr/bin/chromium) and photographs each page; then
// the security page once more on a second broker with dynamic security (a file made by
// mosquitto_ctrl), signed in to as its admin.
// Usage: node scripts/console-screenshots.mjs [seconds of traffic before the first picture, 60]
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import mqtt from "mqtt";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const warmup = Number(process.argv[2] ?? 60) * 1000;
const TOKEN = "screenshot-token-0123456789";
const bun = join(root, "node_modules", ".bin", "bun");
const dir = mkdtempSync(join(tmpdir(), "midge-shots-"));
const docs = join(root, "docs");
mkdirSync(docs, { recursive: true });

execFileSync("node", [join(root, "scripts", "build-wasm.mjs")], { stdio: "inherit" });
const pw = join(dir, "passwd");
for (
  const [i, [user, pass]] of [["alice", "alice-pw"], ["bob", "bob-pw"], ["sensors", "s-pw"]]
    .entries()
) {
  execFileSync(bun, [
    join(root, "src", "main.ts"),
    "passwd",
    ...(i ? [] : ["-c"]),
    "-b",
    pw,
    user,
    pass,
  ]);
}
const acl = join(dir, "acl");
writeFileSync(
  acl,
  [
    "# Anonymous clients on the loopback listener",
    "topic readwrite #",
    "",
    "user alice",
    "topic readwrite plant/#",
    "topic read $SYS/#",
    "",
    "user sensors",
    "topic write plant/+/+/temperature",
    "",
    "pattern readwrite devices/%c/#",
    "",
  ].join("\n"),
);
const config = join(dir, "midge.toml");
writeFileSync(
  config,
  [
    `http_listener = "127.0.0.1:0"`,
    `admin_token = "${TOKEN}"`,
    `persistence_location = "${dir}"`,
    `password_file = "${pw}"`,
    `acl_file = "${acl}"`,
    `log_type = ["error", "warning", "notice", "information", "subscribe"]`,
    "[[listener]]",
    "port = 0",
    "allow_anonymous = true",
    "",
  ].join("\n"),
);

/** Starts `midge serve -c file` in `cwd`; resolves with the process and its mqtt/http ports. */
async function serve(file, cwd) {
  const proc = spawn(bun, [join(root, "src", "main.ts"), "serve", "-c", file], {
    cwd,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const ports = await new Promise((resolve, reject) => {
    const found = {};
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      for (const m of out.matchAll(/listening (mqtt|http) on 127\.0\.0\.1:(\d+)/g)) {
        found[m[1]] = m[2];
      }
      if (found.mqtt && found.http) resolve(found);
    });
    proc.on("exit", (c) => reject(new Error(`broker exited (${c})`)));
  });
  return { proc, ports };
}

const { proc: broker, ports } = await serve(config, dir);
const url = `mqtt://127.0.0.1:${ports.mqtt}`;
const base = `http://127.0.0.1:${ports.http}`;
console.log(`broker: ${url}, console: ${base}`);

const clients = [];
const open = async (id, opts = {}) => {
  const c = await mqtt.connectAsync(url, { clientId: id, reconnectPeriod: 0, ...opts });
  clients.push(c);
  return c;
};
// Dashboards and services that subscribe.
for (let i = 1; i <= 6; i++) {
  const c = await open(`dashboard-${i}`, { protocolVersion: 5, keepalive: 30 });
  await c.subscribeAsync(["plant/#", "devices/+/status"], { qos: i % 3 });
}
const historian = await open("historian", { clean: false, protocolVersion: 4 });
await historian.subscribeAsync("plant/+/+/temperature", { qos: 1 });
// Offline persistent sessions with queued messages.
for (let i = 1; i <= 3; i++) {
  const c = await mqtt.connectAsync(url, {
    clientId: `mobile-app-${i}`,
    clean: false,
    reconnectPeriod: 0,
  });
  await c.subscribeAsync("alerts/#", { qos: 1 });
  await c.endAsync();
}
// Sensors that publish.
const sensors = [];
for (const line of ["line1", "line2", "line3"]) {
  for (const cell of ["cell-a", "cell-b"]) {
    sensors.push({ c: await open(`sensor-${line}-${cell}`, { keepalive: 60 }), line, cell });
  }
}
for (let d = 1; d <= 8; d++) {
  const c = await open(`device-${String(d).padStart(3, "0")}`);
  await c.publishAsync(
    `devices/device-${String(d).padStart(3, "0")}/status`,
    d % 4 ? "online" : "offline",
    {
      qos: 1,
      retain: true,
    },
  );
}
await sensors[0].c.publishAsync(
  "plant/config",
  JSON.stringify({ site: "Tampere", lines: 3, units: { temperature: "°C", pressure: "kPa" } }),
  { qos: 1, retain: true },
);
await sensors[0].c.publishAsync(
  "plant/firmware/blob",
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0x3e, 0]),
  {
    qos: 1,
    retain: true,
  },
);
await sensors[1].c.publishAsync("alerts/line2/pressure", "pressure above 310 kPa", { qos: 1 });

// Traffic that rises and falls so the charts have a shape.
let tick = 0;
const pump = setInterval(() => {
  tick++;
  const burst = 2 + Math.round(6 * (1 + Math.sin(tick / 40)));
  for (let k = 0; k < burst; k++) {
    const s = sensors[(tick + k) % sensors.length];
    const t = (20 + 3 * Math.sin((tick + k) / 15)).toFixed(2);
    s.c.publish(
      `plant/${s.line}/${s.cell}/temperature`,
      JSON.stringify({ t: Number(t), unit: "°C", ts: Date.now() }),
      { qos: k % 2 },
    );
    if (k % 3 === 0) s.c.publish(`plant/${s.line}/${s.cell}/pressure`, String(300 + (tick % 9)));
  }
}, 100);

console.log(`traffic for ${warmup / 1000} s …`);
await new Promise((r) => setTimeout(r, warmup));

const profile = mkdtempSync(join(tmpdir(), "midge-shots-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 860 },
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
const shot = async (page, name) => {
  await page.waitForTimeout(700);
  await page.screenshot({ path: join(docs, `console-${name}.png`), fullPage: true });
  console.log(`docs/console-${name}.png`);
};
try {
  const page = await browser.newPage();
  await page.goto(base + "/");
  await page.fill("#token", TOKEN);
  await page.click("#signin button[type=submit]");
  await page.waitForSelector("#chart-msg canvas");
  await page.waitForTimeout(2500);
  await shot(page, "overview");

  await page.click("#nav a[href='#clients']");
  await page.fill("#client-search", "dashboard");
  await page.waitForSelector("#clients-table tr[data-id='dashboard-6']");
  await page.waitForSelector("#clients-table tr[data-id='historian']", { state: "detached" });
  await page.click("#clients-table tr[data-id='dashboard-1']");
  await page.waitForSelector("#client-detail h2");
  await shot(page, "clients");

  await page.click("#nav a[href='#topics']");
  await page.waitForTimeout(5500); // one rate window
  await page.click("#topic-tree tr[data-topic='plant']");
  await page.click("#retained-list tr[data-topic='plant/config']");
  await page.waitForSelector("#retained-view pre");
  await shot(page, "topics");

  await page.click("#nav a[href='#messages']");
  await page.fill("#sub-filter", "plant/line1/#");
  await page.click("#sub-go");
  await page.fill("#pub-topic", "plant/line1/cell-a/setpoint");
  await page.fill("#pub-payload", '{"t": 21.0}');
  await page.selectOption("#pub-qos", "1");
  await page.click("#pub-form summary");
  await page.waitForTimeout(2500);
  await shot(page, "messages");

  await page.click("#nav a[href='#security']");
  await page.waitForSelector("#acl");
  await shot(page, "security");

  await page.click("#nav a[href='#logs']");
  await page.waitForTimeout(1500);
  await shot(page, "logs");

  // The security page with dynamic security: a second broker on a file made by mosquitto_ctrl,
  // given clients, groups and roles through the admin API, signed in to as its admin.
  clearInterval(pump);
  const dsFile = join(dir, "dynamic-security.json");
  execFileSync("mosquitto_ctrl", ["dynsec", "init", dsFile, "admin", "admin-pw"]);
  const dsDir = join(dir, "dynsec");
  mkdirSync(dsDir);
  const dsConfig = join(dsDir, "midge.toml");
  writeFileSync(
    dsConfig,
    [
      `http_listener = "127.0.0.1:0"`,
      `admin_token = "${TOKEN}"`,
      "persistence = false",
      "[[listener]]",
      "port = 0",
      "[[plugins]]",
      'name = "dynamic-security"',
      `config_file = "${dsFile}"`,
      "",
    ].join("\n"),
  );
  const ds = await serve(dsConfig, dsDir);
  try {
    const dsBase = `http://127.0.0.1:${ds.ports.http}`;
    const commands = [
      { command: "createRole", rolename: "sensor-writer" },
      {
        command: "addRoleACL",
        rolename: "sensor-writer",
        acltype: "publishClientSend",
        topic: "plant/+/+/temperature",
        allow: true,
      },
      { command: "createRole", rolename: "dashboard-reader" },
      {
        command: "addRoleACL",
        rolename: "dashboard-reader",
        acltype: "subscribePattern",
        topic: "plant/#",
        allow: true,
      },
      { command: "createGroup", groupname: "dashboards" },
      { command: "addGroupRole", groupname: "dashboards", rolename: "dashboard-reader" },
    ];
    for (const line of ["line1", "line2", "line3"]) {
      commands.push(
        { command: "createClient", username: `sensor-${line}`, password: `${line}-pw` },
        { command: "addClientRole", username: `sensor-${line}`, rolename: "sensor-writer" },
      );
    }
    for (const n of [1, 2]) {
      commands.push(
        { command: "createClient", username: `dashboard-${n}`, password: `d${n}-pw` },
        { command: "addGroupClient", groupname: "dashboards", username: `dashboard-${n}` },
      );
    }
    const r = await fetch(`${dsBase}/api/dynsec`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ commands }),
    });
    if (!r.ok) throw new Error(`dynsec commands: ${r.status} ${await r.text()}`);
    const page = await browser.newPage();
    await page.goto(`${dsBase}/#security`);
    await page.waitForSelector("#username", { state: "visible" });
    await page.fill("#username", "admin");
    await page.fill("#password", "admin-pw");
    await shot(page, "signin");
    await page.click("#signin button[type=submit]");
    await page.waitForSelector("#dynsec-clients td:has-text('sensor-line1')");
    await shot(page, "security-dynsec");
  } finally {
    ds.proc.kill("SIGTERM");
    await new Promise((r) => ds.proc.once("exit", r));
  }
} finally {
  clearInterval(pump);
  await browser.close();
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
  broker.kill("SIGTERM");
  await new Promise((r) => broker.once("exit", r));
  rmSync(profile, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}
