/**
 * `midge convert mosquitto.conf`: prints the equivalent Midge TOML (comments carried over,
 * Mosquitto's defaults spelled out where they differ from Midge's) on standard output, and on
 * standard error the options Midge does not honour and the recommendations. Exits 1, printing
 * every malformed line with file:line, when the file would not start the broker.
 */
import process from "node:process";
import { readFile } from "node:fs/promises";
import { ConfigError, parseConfig } from "../config/load.ts";
import {
  formatMessage,
  readMosquittoConf,
  translateMosquittoConf,
} from "../config/mosquitto_conf.ts";

/** Usage text of `midge convert`. */
export const CONVERT_USAGE = `Usage: midge convert MOSQUITTO_CONF

Print the Midge TOML equivalent of a Mosquitto configuration file (mosquitto.conf): the same
listeners, security files, limits and bridges, with the file's comments, and Mosquitto's
defaults written out where Midge's differ, so that it means what it meant to Mosquitto.
Options Midge does not honour are listed on standard error with their file and line.

  midge convert /etc/mosquitto/mosquitto.conf > /etc/midge/config.toml

Options:
  -h, --help   Show this help
`;

/** Runs `midge convert <args>`; returns the exit code. */
export async function runConvert(args: string[]): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    process.stdout.write(CONVERT_USAGE);
    return 0;
  }
  if (args.length !== 1 || args[0].startsWith("-")) {
    process.stderr.write(`midge: convert: expected one file name\n\n${CONVERT_USAGE}`);
    return 1;
  }
  const file = args[0];
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    process.stderr.write(`midge: ${file}: cannot read: ${(e as { code?: string }).code ?? e}\n`);
    return 1;
  }
  const t = translateMosquittoConf(text, file);
  for (const e of t.errors) process.stderr.write(`midge: ${formatMessage(e)}\n`);
  if (t.errors.length > 0) return 1;
  // The same check `midge serve` makes, so the output is known to load.
  try {
    readMosquittoConf(text, file, parseConfig, (m) => new Error(m.map(formatMessage).join("\n")));
  } catch (e) {
    const message = e instanceof ConfigError || e instanceof Error ? e.message : String(e);
    process.stderr.write(`midge: ${message}\n`);
    return 1;
  }
  for (const w of t.warnings) process.stderr.write(`midge: warning: ${formatMessage(w)}\n`);
  for (const n of t.notes) process.stderr.write(`midge: note: ${formatMessage(n)}\n`);
  process.stdout.write(t.toml);
  return 0;
}
