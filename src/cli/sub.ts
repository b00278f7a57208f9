/**
 * `midge sub`: subscribe and print messages — mosquitto_sub's flags, output formats and exit
 * codes. Like mosquitto_sub it reconnects when the connection is lost; with several `-h`/`-L` it
 * moves on to the next broker and subscribes again there.
 */
import process from "node:process";
import type { PublishPacket, Subscription } from "../codec/types.ts";
import { formatMessage, type OutputOptions } from "./format.ts";
import {
  checkFilter,
  COMMON,
  connectionOptions,
  EXIT,
  exitWith,
  intOption,
  openClient,
  type OptionSpec,
  parseOptions,
  qosOption,
  topicMatches,
  UsageError,
  writeErr,
  writeOut,
} from "./mqtt_options.ts";

export const SUB_USAGE =
  `Usage: midge sub {[-h host[:port]]... [-p port] [-u username] [-P password] -t topic... | -L URL... [-t topic]...}
                 [-c] [-k keepalive] [-q qos] [-x session-expiry]
                 [-C msg_count] [-E] [-R] [--retained-only] [--remove-retained] [-T filter_out]... [-U topic]...
                 [-F format] [-W timeout_secs] [-A bind_address] [-i id] [-I id_prefix]
                 [-d] [-N] [--quiet] [-v] [--pretty] [--retain-as-published]
                 [--will-topic topic [--will-payload payload] [--will-qos qos] [--will-retain]]
                 [{--cafile file | --capath dir} [--cert file] [--key file] [--insecure]]
                 [--tls-version version] [--ciphers list] [--tls-alpn protocol] [--unix path] [--proxy socks-url]
                 [-D command identifier value]...
       midge sub --help

Subscribe to topics and print the messages, like mosquitto_sub (same options and exit codes).

 -h : broker to connect to; default localhost. Repeat for failover: the first live broker is
      used, the next one on loss, subscribing again. host:port and [v6]:port set a port per broker.
 -p : port; default 1883, or 8883 with TLS.
 -L : URL mqtt(s)://[user[:password]@]host[:port]/topic or ws(s)://host[:port]/path; repeatable.
 -t : topic filter to subscribe to; repeatable.   -q : QoS for the subscriptions; default 0.
 -T : topic filter whose messages are not printed; repeatable.
 -U : topic filter to unsubscribe from; repeatable.
 -v : print the topic before the payload.   -N : no newline after each message.
 -F : output format: %t topic, %p payload, %q QoS, %r retained, %l length, %m message id,
      %x / %X payload in hex, %I ISO-8601 time, %U Unix time, %j / %J JSON, %C %D %E %F %P %R %S
      v5 properties, @Y @m @d @H @M @S @N … time fields, \\n \\t \\0 … escapes.
 -C : exit after this many messages.   -W : exit after this many seconds (exit status 27).
 -E : exit once the subscriptions are acknowledged.
 -R : do not print retained (stale) messages.
 --random-filter : print only this percentage of the messages received (0.1-100), at random.
 --retained-only : print only retained messages; exit at the first one that is not.
 --remove-retained : clear every retained message received (publish an empty retained one).
 --pretty : indent JSON output.    --retain-as-published : v5 subscription option.
 -i : client id; default chosen by the broker.  -I : client id prefix (pid appended).
 -c : persistent session (needs -i).  -x : v5 session expiry interval (-1 = never).
 -k : keep alive in seconds; default 60.   -u, -P : user name and password.
 -V : protocol version: 5 (mqttv5), 311 (mqttv311, default) or 31 (mqttv31).
 -D : v5 property: -D command name value, e.g. -D subscribe subscription-identifier 7.
 -d : print every packet sent and received.   --quiet : print no error messages.
 --cafile, --capath, --cert, --key : TLS files.  --insecure : do not check the server's host name.
 --will-topic, --will-payload, --will-qos, --will-retain : the client's will.
 -A : local address to bind.
 --unix : connect through this Unix socket instead of TCP (the broker's unix_socket listener).
 --tls-version : tlsv1.3 or tlsv1.2 only.  --ciphers : OpenSSL cipher list.  --tls-alpn : ALPN protocol.
 --proxy : socks5h://[user[:password]@]host[:port], a SOCKS5 proxy to connect through.
 --psk, --psk-identity : TLS-PSK, not available (use client certificates: --cert, --key).

Exit status: 0 after -C messages, -E or --retained-only; 27 when -W timed out; the CONNACK code
when the broker refuses the connection; 1 for other errors.
`;

const SUB: Record<string, OptionSpec> = {
  ...COMMON,
  count: { names: ["-C"], arity: 1 },
  "exit-after-sub": { names: ["-E"], arity: 0 },
  format: { names: ["-F"], arity: 1 },
  "no-eol": { names: ["-N"], arity: 0 },
  "no-retained": { names: ["-R"], arity: 0 },
  "retained-only": { names: ["--retained-only"], arity: 0 },
  "remove-retained": { names: ["--remove-retained"], arity: 0 },
  "retain-as-published": { names: ["--retain-as-published"], arity: 0 },
  pretty: { names: ["--pretty"], arity: 0 },
  topic: { names: ["-t", "--topic"], arity: 1, multi: true },
  "filter-out": { names: ["-T", "--filter-out"], arity: 1, multi: true },
  unsubscribe: { names: ["-U", "--unsubscribe"], arity: 1, multi: true },
  verbose: { names: ["-v", "--verbose"], arity: 0 },
  timeout: { names: ["-W"], arity: 1 },
  "random-filter": { names: ["--random-filter"], arity: 1 },
};

/** Runs `midge sub` with `args`; returns (or exits with) Mosquitto's exit code. */
export async function runSub(args: string[]): Promise<number> {
  let quiet = args.includes("--quiet");
  try {
    const v = parseOptions(args, SUB);
    if (v.help) {
      process.stdout.write(SUB_USAGE);
      return 0;
    }
    const conn = connectionOptions(v, { defaultVersion: 4, tool: "midge_sub" });
    quiet = conn.quiet;
    const topics = [...((v.topic as string[] | undefined) ?? [])];
    if (conn.urlTopic !== undefined) topics.unshift(conn.urlTopic);
    const unsubs = (v.unsubscribe as string[] | undefined) ?? [];
    if (topics.length === 0 && unsubs.length === 0) {
      throw new UsageError("You must specify a topic to subscribe to.");
    }
    for (const t of topics) checkFilter(t);
    for (const t of unsubs) checkFilter(t, "unsubscribe");
    const filterOut = (v["filter-out"] as string[] | undefined) ?? [];
    for (const t of filterOut) checkFilter(t, "filter");
    const qos = qosOption(v.qos as string | undefined);
    const count = v.count !== undefined
      ? intOption(v.count as string, 1, 2 ** 31, "message count")
      : 0;
    const timeout = v.timeout !== undefined
      ? intOption(v.timeout as string, 1, 3600 * 24 * 365, "timeout")
      : 0;
    if (v["no-retained"] && v["retained-only"]) {
      throw new UsageError("Cannot use -R and --retained-only together.");
    }
    let keep = 100;
    if (v["random-filter"] !== undefined) {
      const r = v["random-filter"] as string;
      keep = Number(r);
      if (!/^\d+(\.\d+)?$/.test(r) || keep < 0.1 || keep > 100) {
        throw new UsageError(`Invalid random filter given: ${r} (0.1 to 100.0).`);
      }
    }
    const output: OutputOptions = {
      verbose: v.verbose === true,
      noEol: v["no-eol"] === true,
      pretty: v.pretty === true,
      ...(v.format !== undefined ? { format: v.format as string } : {}),
    };

    const client = await openClient(conn, { reconnect: true, reconnectDelay: 1000 });
    if (typeof client === "number") return client;

    let done = false;
    let printed = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (code: number, message?: string): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      if (message) writeErr(message, quiet);
      // Let the acknowledgement of the last message go out first.
      setTimeout(() => {
        void client.end(conn.props.disconnect ? { properties: conn.props.disconnect } : {})
          .then(() => exitWith(code));
      }, 0);
    };
    if (timeout) timer = setTimeout(() => finish(EXIT.timeout, "Timed out\n"), timeout * 1000);

    client.on("message", (p: PublishPacket) => {
      if (done) return;
      // --random-filter, as mosquitto_sub: a message left out is not counted for -C either.
      if (keep < 100 && Math.random() * 100 >= keep) return;
      if (v["retained-only"] && !p.retain) return finish(EXIT.ok);
      if (v["no-retained"] && p.retain) return;
      if (filterOut.some((f) => topicMatches(f, p.topic))) return;
      if (v["remove-retained"] && p.retain && p.payload.length) {
        client.publish(p.topic, new Uint8Array(0), { qos: 1, retain: true }).catch(() => {});
      }
      const { out, error } = formatMessage(p, output);
      if (error) writeErr(error, quiet);
      else void writeOut(out);
      printed++;
      if (count && printed >= count) finish(EXIT.ok);
    });
    client.on("offline", (e: Error) => {
      if (!done) writeErr(`Connection lost: ${e.message}; reconnecting.\n`, quiet);
    });

    const subs: Subscription[] = topics.map((t) => ({
      topic: t,
      qos,
      ...(v["retain-as-published"] ? { rap: true } : {}),
    }));
    if (subs.length) {
      const ack = await client.subscribe(subs, { properties: conn.props.subscribe });
      const denied = ack.granted.filter((g) => g >= 0x80).length;
      if (denied === ack.granted.length) {
        writeErr("All subscription requests were denied.\n", quiet);
        if (!v["exit-after-sub"]) {
          finish(EXIT.error);
          return await new Promise<number>(() => {});
        }
      } else if (denied) {
        ack.granted.forEach((g, i) => {
          if (g >= 0x80) writeErr(`Warning: Subscription to ${subs[i].topic} denied.\n`, quiet);
        });
      }
    }
    if (unsubs.length) await client.unsubscribe(unsubs, conn.props.unsubscribe);
    if (v["exit-after-sub"]) finish(EXIT.ok);
    // Runs until -C, -W, --retained-only or a signal ends it.
    return await new Promise<number>(() => {});
  } catch (e) {
    if (e instanceof UsageError) {
      writeErr(`Error: ${e.message}\n\nUse 'midge sub --help' to see usage.\n`, quiet);
      return EXIT.error;
    }
    writeErr(`Error: ${(e as Error).message}\n`, quiet);
    return EXIT.error;
  }
}
