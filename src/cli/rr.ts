/**
 * `midge rr`: request/response like mosquitto_rr. Subscribes to the response topic (-e), publishes
 * the request to -t with the v5 Response Topic and Correlation Data properties, prints the first
 * reply and exits. With -V 311 the properties are not sent: the first message on -e is the reply.
 */
import { randomBytes } from "node:crypto";
import process from "node:process";
import type { Properties, PublishPacket } from "../codec/types.ts";
import { formatMessage, type OutputOptions } from "./format.ts";
import {
  checkFilter,
  checkTopic,
  COMMON,
  connectionOptions,
  EXIT,
  exitWith,
  intOption,
  messagePayload,
  openClient,
  type OptionSpec,
  parseOptions,
  qosOption,
  UsageError,
  writeErr,
  writeOut,
} from "./mqtt_options.ts";

export const RR_USAGE =
  `Usage: midge rr {[-h host[:port]]... [-p port] [-u username] [-P password] | -L URL...}
                -t request-topic -e response-topic {-f file | -m message | -n | -s}
                [-c] [-k keepalive] [-q qos] [-x session-expiry] [-W timeout_secs]
                [-A bind_address] [-i id] [-I id_prefix] [-d] [-N] [--quiet] [-v] [-F format] [--pretty]
                [{--cafile file | --capath dir} [--cert file] [--key file] [--insecure]]
                [--tls-version version] [--ciphers list] [--tls-alpn protocol] [--unix path] [--proxy socks-url]
                [-D command identifier value]...
       midge rr --help

Publish a request and wait for the response, like mosquitto_rr. MQTT v5 is the default: the
request carries the Response Topic (-e) and Correlation Data (random unless -D publish
correlation-data is given), and only a reply with the same correlation data (or none) counts.

 -t : request topic.  -e : response topic (subscribed to before the request is sent).
 -m, -f, -n, -s : the request payload (message, file, empty, stdin).
 -W : give up after this many seconds (exit status 27).
 -v, -N, -F, --pretty : print the reply as midge sub does.
 Connection, TLS, will and -D options as for midge pub.

Exit status: 0 when a reply was printed; 27 on timeout; the CONNACK code when the broker refuses
the connection; 1 for other errors.
`;

const RR: Record<string, OptionSpec> = {
  ...COMMON,
  response: { names: ["-e", "--response-topic"], arity: 1 },
  file: { names: ["-f", "--file"], arity: 1 },
  message: { names: ["-m", "--message"], arity: 1 },
  null: { names: ["-n", "--null-message"], arity: 0 },
  stdin: { names: ["-s", "--stdin-file"], arity: 0 },
  topic: { names: ["-t", "--topic"], arity: 1 },
  format: { names: ["-F"], arity: 1 },
  "no-eol": { names: ["-N"], arity: 0 },
  "no-retained": { names: ["-R"], arity: 0 },
  pretty: { names: ["--pretty"], arity: 0 },
  verbose: { names: ["-v", "--verbose"], arity: 0 },
  timeout: { names: ["-W"], arity: 1 },
};

/** Runs `midge rr` with `args`; returns (or exits with) the exit code. */
export async function runRr(args: string[]): Promise<number> {
  let quiet = args.includes("--quiet");
  try {
    const v = parseOptions(args, RR);
    if (v.help) {
      process.stdout.write(RR_USAGE);
      return 0;
    }
    const conn = connectionOptions(v, { defaultVersion: 5, tool: "midge_rr" });
    quiet = conn.quiet;
    const topic = (v.topic as string | undefined) ?? conn.urlTopic;
    const response = v.response as string | undefined;
    if (topic === undefined || response === undefined) {
      throw new UsageError("Both a request topic (-t) and a response topic (-e) must be given.");
    }
    checkTopic(topic);
    checkFilter(response, "response");
    const modes = ["message", "file", "null", "stdin"].filter((k) => v[k] !== undefined);
    if (modes.length !== 1) {
      throw new UsageError(
        modes.length
          ? "Only one type of message can be sent at once."
          : "No message given (-m, -f, -n or -s).",
      );
    }
    const payload = (await messagePayload(v))!;
    const qos = qosOption(v.qos as string | undefined);
    const timeout = v.timeout !== undefined
      ? intOption(v.timeout as string, 1, 3600 * 24 * 365, "timeout")
      : 0;
    const output: OutputOptions = {
      verbose: v.verbose === true,
      noEol: v["no-eol"] === true,
      pretty: v.pretty === true,
      ...(v.format !== undefined ? { format: v.format as string } : {}),
    };
    const v5 = (conn.client.protocolVersion ?? 5) === 5;
    const props: Properties = { ...conn.props.publish };
    let correlation: Uint8Array | undefined;
    if (v5) {
      props.responseTopic = response;
      props.correlationData ??= new TextEncoder().encode(randomBytes(8).toString("hex"));
      correlation = props.correlationData;
    }

    const client = await openClient(conn, { reconnect: false });
    if (typeof client === "number") return client;
    return await new Promise<number>((resolve) => {
      let done = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (code: number, message?: string) => {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        if (message) writeErr(message, quiet);
        setTimeout(() => void client.end().then(() => exitWith(code)).then(resolve), 0);
      };
      if (timeout) timer = setTimeout(() => finish(EXIT.timeout, "Timed out\n"), timeout * 1000);
      client.on("close", (e?: Error) => {
        if (e && !done) finish(EXIT.connectionLost, `Error: ${e.message}\n`);
      });
      client.on("message", (p: PublishPacket) => {
        if (done) return;
        if (v["no-retained"] && p.retain) return;
        const got = p.properties?.correlationData;
        if (correlation && got && !sameBytes(got, correlation)) return;
        const { out, error } = formatMessage(p, output);
        if (error) writeErr(error, quiet);
        else void writeOut(out);
        finish(EXIT.ok);
      });
      client.subscribe([{ topic: response, qos }], { properties: conn.props.subscribe })
        .then(async (ack) => {
          if (ack.granted[0] >= 0x80) {
            return finish(EXIT.error, `Error: Subscription to ${response} denied.\n`);
          }
          await client.publish(topic, payload, { qos, properties: v5 ? props : undefined });
        })
        .catch((e: Error) => finish(EXIT.error, `Error: ${e.message}\n`));
    });
  } catch (e) {
    if (e instanceof UsageError) {
      writeErr(`Error: ${e.message}\n\nUse 'midge rr --help' to see usage.\n`, quiet);
      return EXIT.error;
    }
    writeErr(`Error: ${(e as Error).message}\n`, quiet);
    return EXIT.error;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
