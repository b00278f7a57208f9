/**
 * `midge import-mosquitto`: copy the retained messages and persistent sessions of a Mosquitto
 * persistence file (`mosquitto.db`) into the store Midge's configuration names, so that moving
 * from Mosquitto loses no state. The file is read by src/store/mosquitto_import.ts.
 */
import process from "node:process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type Config, ConfigError, loadConfig } from "../config/load.ts";
import { SqliteStore, StoreError } from "../store/sqlite.ts";
import {
  type ImportPlan,
  MosquittoDbError,
  parseMosquittoDb,
  planImport,
  writeImport,
} from "../store/mosquitto_import.ts";

export const IMPORT_MOSQUITTO_USAGE =
  `Usage: midge import-mosquitto [-c FILE] [--force] [-n] MOSQUITTO_DB

Import Mosquitto's persistence file (mosquitto.db, written by Mosquitto 1.6 and 2.0 with
"persistence true") into the persistence database of the configuration: retained messages
(topic, payload, QoS, v5 properties, message expiry) and persistent sessions (client id, user
name, session expiry, subscriptions with their QoS, no-local, retain-as-published and
subscription identifier, and the QoS 0/1/2 messages queued for or in flight to the client).

Stop Mosquitto first (it writes the file when it stops), and run this while Midge is not
running. Left out, and listed in the output: expired messages and sessions, $SYS messages,
sessions with session expiry 0, and QoS 2 messages a client sent that still wait for its
PUBREL. Mosquitto's file holds no wills and no shared subscriptions.

Options:
  -c, --config FILE  Configuration file; the import goes to persistence_location /
                     persistence_file. Default: the built-in configuration (data/midge.db)
      --force        Import even when the database already holds sessions or retained
                     messages (imported client ids and topics replace the ones there)
  -n, --dry-run      Read the file and show what would be imported; write nothing
  -h, --help         Show this help
`;

class Fail extends Error {}

/** Runs `midge import-mosquitto` with its arguments; returns the exit code. */
export async function runImportMosquitto(args: string[]): Promise<number> {
  try {
    process.stdout.write(await importMosquitto(args));
    return 0;
  } catch (e) {
    if (e instanceof Fail || e instanceof ConfigError || e instanceof StoreError) {
      process.stderr.write(`midge: import-mosquitto: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

async function importMosquitto(args: string[]): Promise<string> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c" },
        force: { type: "boolean" },
        "dry-run": { type: "boolean", short: "n" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (e) {
    throw new Fail(
      `${String((e as Error).message).split(/\.(?:\s|$)/)[0]}\n\n${IMPORT_MOSQUITTO_USAGE}`,
    );
  }
  if (values.help) return IMPORT_MOSQUITTO_USAGE;
  if (positionals.length !== 1) {
    throw new Fail(`expected one MOSQUITTO_DB file\n\n${IMPORT_MOSQUITTO_USAGE}`);
  }
  const source = positionals[0];
  const config: Config = await loadConfig(values.config);

  let bytes: Uint8Array;
  try {
    bytes = await readFile(source);
  } catch (e) {
    throw new Fail(`${source}: ${(e as Error).message}`);
  }
  let plan: ImportPlan;
  let version: number;
  try {
    const db = parseMosquittoDb(bytes);
    version = db.version;
    plan = planImport(db, Date.now());
  } catch (e) {
    if (e instanceof MosquittoDbError) throw new Fail(`${source}: ${e.message}`);
    throw e;
  }

  const target = join(config.persistence_location, config.persistence_file);
  const lines: string[] = [];
  if (values["dry-run"]) {
    lines.push(`${source} (Mosquitto db version ${version}) would import into ${target}:`);
  } else {
    const store = new SqliteStore(target, config.persistence_sync);
    try {
      const had = store.load();
      if ((had.sessions.length || had.retained.length) && !values.force) {
        throw new Fail(
          `${target} already holds ${count(had.sessions.length, "session")} and ` +
            `${count(had.retained.length, "retained message")}; --force imports anyway ` +
            `(imported client ids and topics replace the ones there)`,
        );
      }
      writeImport(store, plan);
      if (!store.flush()) throw new Fail(`${target}: writing the imported state failed`);
    } finally {
      store.close();
    }
    lines.push(`Imported ${source} (Mosquitto db version ${version}) into ${target}:`);
  }
  lines.push(...summary(plan));
  if (!config.persistence) {
    lines.push(
      `Note: persistence is off in ${config.file}; Midge reads ${target} only with ` +
        `persistence = true.`,
    );
  }
  return lines.join("\n") + "\n";
}

/** What the plan holds and what it leaves out, one item a line. */
function summary(plan: ImportPlan): string[] {
  const subs = plan.sessions.reduce((n, s) => n + s.subscriptions.length, 0);
  const queued = plan.sessions.reduce((n, s) => n + s.messages.filter((m) => !m.state).length, 0);
  const inflight = plan.sessions.reduce((n, s) => n + s.messages.filter((m) => m.state).length, 0);
  const out = [
    `  ${count(plan.retained.length, "retained message")}`,
    `  ${count(plan.sessions.length, "session")}`,
    `  ${count(subs, "subscription")}`,
    `  ${count(queued, "queued message")}, ${count(inflight, "message")} in flight`,
  ];
  if (plan.skipped.size) {
    out.push("Not imported:");
    for (const [reason, n] of plan.skipped) out.push(`  ${reason}: ${n}`);
  }
  for (const w of plan.warnings) out.push(`Warning: ${w}`);
  return out;
}

function count(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? "" : "s"}`;
}
