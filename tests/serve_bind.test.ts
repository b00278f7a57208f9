/**
 * `midge serve` on a port another server holds: one line naming the address, the port and the
 * cause, the same on Bun (Bun.listen, Bun.serve, node:tls) as on Deno, and exit status 1.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { startBroker } from "./helpers/broker.ts";
import { makeCerts } from "./helpers/certs.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
/** Run src/main.ts with the runtime running this test (scripts/test.mjs sets MIDGE_TEST_RUNTIME). */
const runtime = process.env.MIDGE_TEST_RUNTIME ?? ("Bun" in globalThis ? "bun" : "deno");
const bin = join(root, "node_modules", ".bin", runtime);
const prefix = runtime === "deno" ? ["run", "-A", "src/main.ts"] : ["src/main.ts"];

const dir = mkdtempSync(join(tmpdir(), "midge-bind-"));
const certs = makeCerts();
after(() => {
  rmSync(dir, { recursive: true, force: true });
  certs.cleanup();
});

/** `midge serve` with one [[listener]] (`extra` lines) on `port`: its exit status and stderr. */
function serveOn(port: number, name: string, extra: string) {
  const cfg = join(dir, `${name}.toml`);
  writeFileSync(
    cfg,
    `persistence = false\n\n[[listener]]\nbind_address = "127.0.0.1"\nport = ${port}\n${extra}`,
  );
  const r = spawnSync(bin, [...prefix, "serve", "-c", cfg], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
    // Should it start after all, it is stopped rather than left running.
    timeout: 30_000,
  });
  return { status: r.status, stderr: r.stderr };
}

const LISTENERS: [string, string][] = [
  ["mqtt", ""],
  ["websockets", `protocol = "websockets"\n`],
  ["mqtt over TLS", `certfile = "${certs.serverCert}"\nkeyfile = "${certs.serverKey}"\n`],
];

for (const [name, extra] of LISTENERS) {
  test(`serve: a ${name} listener on a port in use names the address, the port and the cause`, async () => {
    const first = await startBroker();
    try {
      const r = serveOn(first.port, name.replace(/ /g, "-"), extra);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(
        r.stderr.trim(),
        `midge: cannot listen on 127.0.0.1:${first.port}: address already in use`,
      );
    } finally {
      await first.stop();
    }
  });
}
