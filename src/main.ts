/**
 * The `midge` command: `midge <command> [options]`. Each command is one entry in `COMMANDS`
 * (summary, usage, parseArgs options, run); the work itself lives in `src/cli/<command>.ts`,
 * loaded only when that command runs. Runs unchanged under Deno, Bun and the compiled binary.
 */
import process from "node:process";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { type Config, ConfigError, loadConfig } from "./config/load.ts";
import { VERSION } from "./version.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;
type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

interface Command {
  summary: string;
  usage: string;
  options: Options;
  /** Whether the command takes positional arguments (passed to `run`). */
  positionals?: boolean;
  /**
   * The command parses its own arguments (pub, sub, rr take Mosquitto's flags, which parseArgs
   * cannot express: `-h` is a host, `-D` takes three or four words); `run` gets them all.
   */
  raw?: (args: string[]) => Promise<number>;
  /** Returns the exit code; a command that keeps running (serve) returns once it has started. */
  run(values: Values, positionals: string[]): Promise<number>;
}

const HELP = { help: { type: "boolean", short: "h" } } as const;

const COMMANDS: Record<string, Command> = {
  serve: {
    summary: "Run the MQTT broker",
    usage: `Usage: midge serve [-c FILE] [-p PORT] [-v] [-d] [--test-config]

Run the MQTT broker.

Options:
  -c, --config FILE   Configuration file: TOML (see config.toml) or Mosquitto's mosquitto.conf
                      (recognised by its content). Default: the built-in one, which listens on
                      127.0.0.1:1883
  -d, --daemon        Run in the background (like mosquitto -d); returns once it listens
  -p, --port PORT     Listen on PORT instead of the first listener's port (0 = any free port)
  -v, --verbose       Log everything (log_type = ["all"])
      --test-config   Check the configuration and every file it names (certificates, keys,
                      password and ACL files, the persistence directory and database) and
                      exit: 0 if all is valid, 1 if not, with every problem found
  -h, --help          Show this help
`,
    options: {
      config: { type: "string", short: "c" },
      port: { type: "string", short: "p" },
      verbose: { type: "boolean", short: "v" },
      daemon: { type: "boolean", short: "d" },
      "test-config": { type: "boolean" },
      ...HELP,
    },
    run: runServe,
  },
  version: {
    summary: "Print the version",
    usage: "Usage: midge version\n\nPrint the version (same as `midge --version`).\n",
    options: HELP,
    run: () => {
      out(`midge ${VERSION}\n`);
      return Promise.resolve(0);
    },
  },
  pub: mosquittoClient("pub", "Publish messages (mosquitto_pub's options)"),
  sub: mosquittoClient("sub", "Subscribe and print messages (mosquitto_sub's options)"),
  rr: mosquittoClient("rr", "Publish a request and wait for the response (mosquitto_rr)"),
  passwd: {
    summary: "Manage a password file (mosquitto_passwd's options)",
    usage:
      `Usage: midge passwd [-c | -D] [-b] [-H HASH] [-I N] FILE USER [PASSWORD]  (see "midge passwd --help")\n`,
    options: {},
    raw: async (args) => (await import("./cli/passwd.ts")).runPasswd(args),
    run: async () => {
      process.stdout.write((await import("./cli/passwd.ts")).PASSWD_USAGE);
      return 0;
    },
  },
  bench: {
    summary: "Load-generate against a broker and measure it (fan-in, fan-out, latency, ...)",
    usage: `Usage: midge bench <scenario> [options]  (see "midge bench --help")\n`,
    options: {},
    raw: async (args) => (await import("./cli/bench.ts")).runBenchCommand(args),
    run: async () => {
      process.stdout.write((await import("./cli/bench.ts")).BENCH_USAGE);
      return 0;
    },
  },
  "import-mosquitto": {
    summary: "Import Mosquitto's mosquitto.db (retained messages, persistent sessions)",
    usage: `Usage: midge import-mosquitto [-c FILE] [--force] [-n] MOSQUITTO_DB\n`,
    options: {},
    raw: async (args) => (await import("./cli/import_mosquitto.ts")).runImportMosquitto(args),
    run: async () => {
      process.stdout.write((await import("./cli/import_mosquitto.ts")).IMPORT_MOSQUITTO_USAGE);
      return 0;
    },
  },
  convert: {
    summary: "Print the Midge TOML equivalent of a Mosquitto mosquitto.conf",
    usage: `Usage: midge convert MOSQUITTO_CONF  (see "midge convert --help")\n`,
    options: {},
    raw: async (args) => (await import("./cli/convert.ts")).runConvert(args),
    run: async () => {
      process.stdout.write((await import("./cli/convert.ts")).CONVERT_USAGE);
      return 0;
    },
  },
  help: {
    summary: "Show help for midge or for one command",
    usage: "Usage: midge help [COMMAND]\n",
    options: HELP,
    positionals: true,
    run: async (_values, positionals) => await help(positionals),
  },
};

/** pub, sub and rr: the work and the usage text live in src/cli/<name>.ts. */
function mosquittoClient(name: "pub" | "sub" | "rr", summary: string): Command {
  const load = async () => {
    if (name === "pub") {
      const m = await import("./cli/pub.ts");
      return { run: m.runPub, usage: m.PUB_USAGE };
    }
    if (name === "sub") {
      const m = await import("./cli/sub.ts");
      return { run: m.runSub, usage: m.SUB_USAGE };
    }
    const m = await import("./cli/rr.ts");
    return { run: m.runRr, usage: m.RR_USAGE };
  };
  return {
    summary,
    get usage(): string {
      return `Usage: midge ${name} [options]  (see "midge ${name} --help")\n`;
    },
    options: {},
    raw: async (args) => (await load()).run(args),
    run: async () => {
      process.stdout.write((await load()).usage);
      return 0;
    },
  };
}

/** The top-level help: every command with its summary. */
export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length)) + 3;
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}${c.summary}`);
  return `Usage: midge <command> [options]

Midge ${VERSION}: an MQTT 3.1, 3.1.1 and 5.0 broker.

Commands:
${lines.join("\n")}

Options:
  -h, --help  Show this help ("midge <command> -h" for a command's options)
  --version   Print the version
`;
}

/** Runs the command line `argv` (without the program name) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) return fail("no command given", usage());
  if (first === "--version") return COMMANDS.version.run({}, []);
  if (first === "-h" || first === "--help") return help(rest);
  if (first.startsWith("-")) return fail(`unknown option ${first}`, usage());
  if (!Object.hasOwn(COMMANDS, first)) return fail(`unknown command "${first}"`, usage());

  const command = COMMANDS[first];
  if (command.raw) return await command.raw(rest);
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: rest,
      options: command.options,
      allowPositionals: command.positionals ?? false,
      strict: true,
    }));
  } catch (e) {
    // parseArgs messages run on ("... To specify a positional argument ..."): keep the first sentence.
    const message = String((e as Error).message ?? e).split(/\.(?:\s|$)/)[0];
    return fail(`${first}: ${message}`, command.usage);
  }
  if (values.help) {
    out(command.usage);
    return 0;
  }
  return await command.run(values, positionals);
}

function help(args: string[]): number | Promise<number> {
  if (args.length === 0) {
    out(usage());
    return 0;
  }
  if (args.length === 1 && Object.hasOwn(COMMANDS, args[0])) {
    const c = COMMANDS[args[0]];
    if (c.raw) return c.run({}, []); // prints the command's full usage
    out(c.usage);
    return 0;
  }
  return fail(`help: unknown command "${args.join(" ")}"`, usage());
}

async function runServe(values: Values): Promise<number> {
  let config: Config;
  try {
    config = await loadConfig(values.config as string | undefined);
  } catch (e) {
    if (e instanceof ConfigError) return fail(e.message);
    throw e;
  }
  if (values.port !== undefined) {
    const port = String(values.port);
    if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
      return fail(`-p: expected a port number 0-65535, got ${JSON.stringify(port)}`);
    }
    config.listeners[0].port = Number(port); // like mosquitto -p: replaces the listening port
  }
  const verbose = values.verbose === true;
  if (verbose) config.log_type = ["all"];

  // Every file the configuration names, opened and parsed: the check and the start refuse the
  // same things with the same lines. (`serve` reads the database's rows when it opens it.)
  const { checkFiles } = await import("./cli/check_files.ts");
  const problems = checkFiles(config, { readStore: values["test-config"] === true });
  if (problems.length > 0) return fail(problems.join("\n"));

  if (values["test-config"]) {
    const { conversionMessages } = await import("./config/mosquitto_conf.ts");
    const { warnings, notes } = conversionMessages(config);
    for (const w of warnings) process.stderr.write(`midge: warning: ${w}\n`);
    for (const n of notes) process.stderr.write(`midge: note: ${n}\n`);
    const listeners = config.listeners.map((l) => {
      const host = l.bind_address.includes(":") ? `[${l.bind_address}]` : l.bind_address;
      return `${l.protocol} ${host}:${l.port}`;
    });
    out(`${config.file}: configuration OK (listeners: ${listeners.join(", ")})\n`);
    return 0;
  }

  if (values.daemon) {
    const { daemonize } = await import("./cli/daemon.ts");
    const args: string[] = [];
    if (values.config !== undefined) args.push("-c", String(values.config));
    if (values.port !== undefined) args.push("-p", String(values.port));
    if (verbose) args.push("-v");
    return await daemonize(args);
  }

  const { serve } = await import("./cli/serve.ts");
  await serve(config, {
    verbose,
    port: values.port === undefined ? undefined : Number(values.port),
  });
  return 0;
}

function out(text: string): void {
  process.stdout.write(text);
}

/**
 * Prints `midge: <message>` (each line of a message of several lines so prefixed, and
 * optionally usage) to stderr; returns exit code 1.
 */
function fail(message: string, help?: string): number {
  const lines = message.split("\n").map((l) => `midge: ${l}\n`).join("");
  process.stderr.write(`${lines}${help ? `\n${help}` : ""}`);
  return 1;
}

if (import.meta.main) {
  // No top-level await: the compiled executable is built as CommonJS bytecode (faster start-up).
  // Never process.exit() on success: `serve` keeps the event loop alive with its listeners.
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  }, (e) => {
    process.stderr.write(`midge: ${(e as Error)?.message ?? e}\n`);
    process.exit(1);
  });
}
