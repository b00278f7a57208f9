/**
 * `midge pub`: publish one message, a file, stdin, or stdin line by line — mosquitto_pub's flags,
 * messages and exit codes. Several `-h`/`-L` give failover: the first live broker is used, and
 * on loss the next one, with unacknowledged QoS 1/2 messages sent again.
 */
import process from "node:process";
import { reasonText } from "../client/client.ts";
import type { Properties } from "../codec/types.ts";
import {
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
} from "./mqtt_options.ts";

export const PUB_USAGE =
  `Usage: midge pub {[-h host[:port]]... [-p port] [-u username] [-P password] -t topic | -L URL...}
                 {-f file | -l | -n | -m message | -s}
                 [-c] [-k keepalive] [-q qos] [-r] [--repeat N] [--repeat-delay time] [-x session-expiry]
                 [-A bind_address] [-i id] [-I id_prefix] [-d] [--quiet] [-M max_inflight]
                 [--will-topic topic [--will-payload payload] [--will-qos qos] [--will-retain]]
                 [{--cafile file | --capath dir} [--cert file] [--key file] [--insecure]]
                 [--tls-version version] [--ciphers list] [--tls-alpn protocol] [--unix path] [--proxy socks-url]
                 [-D command identifier value]...
       midge pub --help

Publish a message, like mosquitto_pub (same options and exit codes).

 -h : broker to connect to; default localhost. Repeat for failover: the first live broker is
      used, the next one on loss. host:port and [v6]:port set a port per broker.
 -p : port; default 1883, or 8883 with TLS.
 -L : URL mqtt(s)://[user[:password]@]host[:port]/topic or ws(s)://host[:port]/path; repeatable.
 -t : topic to publish to.       -m : message payload.         -f : send a file's contents.
 -l : send each line of stdin as a message.  -s : send all of stdin as one message.
 -n : send a zero-length message.            -r : retain the message.
 -q : QoS 0, 1 or 2; default 0.  -M : most QoS 1/2 messages in flight; default 20.
 -i : client id; default chosen by the broker.  -I : client id prefix (pid appended).
 -c : persistent session (needs -i).  -x : v5 session expiry interval (-1 = never).
 -k : keep alive in seconds; default 60.
 -u, -P : user name and password.
 -V : protocol version: 5 (mqttv5), 311 (mqttv311, default) or 31 (mqttv31).
 -D : v5 property: -D command name value, e.g. -D publish content-type text/plain,
      -D publish user-property key value, -D connect session-expiry-interval 60.
 -d : print every packet sent and received.  --quiet : print no error messages.
 --repeat N : publish the message N times.  --repeat-delay S : seconds between repeats.
 --cafile, --capath, --cert, --key : TLS files.  --insecure : do not check the server's host name.
 --will-topic, --will-payload, --will-qos, --will-retain : the client's will.
 -A : local address to bind.
 --unix : connect through this Unix socket instead of TCP (the broker's unix_socket listener).
 --tls-version : tlsv1.3 or tlsv1.2 only.  --ciphers : OpenSSL cipher list.  --tls-alpn : ALPN protocol.
 --proxy : socks5h://[user[:password]@]host[:port], a SOCKS5 proxy to connect through.
 --psk, --psk-identity : TLS-PSK, not available (use client certificates: --cert, --key).

Exit status: 0 on success; the CONNACK code when the broker refuses the connection (e.g. 5 for
"not authorised", 135 in v5); 1 for other errors; 7 when the connection was lost for good.
`;

const PUB: Record<string, OptionSpec> = {
  ...COMMON,
  file: { names: ["-f", "--file"], arity: 1 },
  lines: { names: ["-l", "--stdin-line"], arity: 0 },
  message: { names: ["-m", "--message"], arity: 1 },
  "max-inflight": { names: ["-M"], arity: 1 },
  null: { names: ["-n", "--null-message"], arity: 0 },
  retain: { names: ["-r", "--retain"], arity: 0 },
  stdin: { names: ["-s", "--stdin-file"], arity: 0 },
  topic: { names: ["-t", "--topic"], arity: 1 },
  repeat: { names: ["--repeat"], arity: 1 },
  "repeat-delay": { names: ["--repeat-delay"], arity: 1 },
};

/** Runs `midge pub` with `args`; returns the exit code (Mosquitto's). */
export async function runPub(args: string[]): Promise<number> {
  let quiet = args.includes("--quiet");
  try {
    const v = parseOptions(args, PUB);
    if (v.help) {
      process.stdout.write(PUB_USAGE);
      return 0;
    }
    const conn = connectionOptions(v, { defaultVersion: 4, tool: "midge_pub" });
    quiet = conn.quiet;
    const topic = (v.topic as string | undefined) ?? conn.urlTopic;
    const modes = ["message", "file", "lines", "null", "stdin"].filter((k) => v[k] !== undefined);
    if (modes.length > 1) throw new UsageError("Only one type of message can be sent at once.");
    if (topic === undefined || modes.length === 0) {
      throw new UsageError("Both topic and message must be supplied.");
    }
    checkTopic(topic);
    const qos = qosOption(v.qos as string | undefined);
    const retain = v.retain === true;
    const repeat = v.repeat !== undefined
      ? intOption(v.repeat as string, 1, 2 ** 31, "repeat count")
      : 1;
    let delay = 0;
    if (v["repeat-delay"] !== undefined) {
      delay = Number(v["repeat-delay"]);
      if (!Number.isFinite(delay) || delay < 0) {
        throw new UsageError(`Invalid repeat delay given: ${v["repeat-delay"]}`);
      }
    }
    const maxInflight = v["max-inflight"] !== undefined
      ? intOption(v["max-inflight"] as string, 1, 65535, "max inflight")
      : 20;
    const payload = await messagePayload(v);

    const client = await openClient(conn, {
      maxInflight,
      reconnect: true,
      reconnectRounds: 1,
      reconnectDelay: 500,
    });
    if (typeof client === "number") return client;

    const props: Properties | undefined = conn.props.publish;
    let failed: Error | undefined;
    client.on("close", (e?: Error) => {
      if (e) failed ??= e;
    });
    const send = (body: Uint8Array) =>
      client.publish(topic, body, { qos, retain, properties: props }).then((ack) => {
        if (ack && (ack.reasonCode ?? 0) >= 0x80) {
          writeErr(
            `Warning: Publish ${ack.messageId} failed: ${reasonText(ack.reasonCode!)}.\n`,
            quiet,
          );
        }
      });
    const pending = new Set<Promise<void>>();
    const track = (p: Promise<void>) => {
      const q = p.catch((e) => {
        failed ??= e as Error;
      }).finally(() => pending.delete(q));
      pending.add(q);
    };
    if (payload !== undefined) {
      for (let i = 0; i < repeat && !failed; i++) {
        if (i > 0 && delay > 0) await new Promise((r) => setTimeout(r, delay * 1000));
        track(send(payload));
        // Keep the window bounded and give acks a turn to arrive.
        if (client.inflight >= maxInflight) await Promise.race(pending);
      }
    } else {
      await readLines(async (line) => {
        if (failed) return;
        track(send(line));
        if (client.inflight >= maxInflight) await Promise.race(pending);
      });
    }
    await Promise.all(pending);
    if (failed) {
      writeErr(`Error: The connection was lost.\n`, quiet);
      client.destroy();
      return await exitWith(EXIT.connectionLost);
    }
    await client.end(conn.props.disconnect ? { properties: conn.props.disconnect } : {});
    return await exitWith(EXIT.ok);
  } catch (e) {
    if (e instanceof UsageError) {
      writeErr(`Error: ${e.message}\n\nUse 'midge pub --help' to see usage.\n`, quiet);
      return EXIT.error;
    }
    writeErr(`Error: ${(e as Error).message}\n`, quiet);
    return EXIT.error;
  }
}

/** Calls `each` for every line of stdin (without its "\n"), one at a time. */
async function readLines(each: (line: Uint8Array) => Promise<void>): Promise<void> {
  let rest: Uint8Array = new Uint8Array(0);
  for await (const c of process.stdin) {
    const chunk = c as Uint8Array;
    let buf: Uint8Array;
    if (rest.length) {
      buf = new Uint8Array(rest.length + chunk.length);
      buf.set(rest);
      buf.set(chunk, rest.length);
    } else buf = chunk;
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      if (buf[i] === 0x0a) {
        await each(buf.slice(start, i));
        start = i + 1;
      }
    }
    rest = buf.slice(start);
  }
  if (rest.length) await each(rest);
}
