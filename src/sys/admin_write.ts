/**
 * The admin API's write operations, used by the web console (each one authenticated and checked
 * against CSRF by the HTTP layer before it gets here, and logged here with who asked):
 *   POST   /api/clients/<id>/kick          disconnect a client (v5: DISCONNECT 0x98)
 *   DELETE /api/clients/<id>               delete an offline session (409 while connected)
 *   DELETE /api/retained?topic=<topic>     delete a retained message
 *   POST   /api/publish                    publish {topic, payload, encoding, qos, retain, properties}
 *   POST   /api/dynsec                     a dynamic-security request {"commands":[…]}
 */
import { Buffer } from "node:buffer";
import type { Broker } from "../broker/broker.ts";
import type { Message } from "../broker/message.ts";
import { validTopicName } from "../broker/topic.ts";
import type { ControlHandler, Principal } from "../auth/chain_types.ts";
import type { Properties, QoS } from "../codec/types.ts";
import { type ApiResponse, findSession } from "./admin.ts";

/** The dynamic-security plugin's control topic. */
export const DYNSEC_TOPIC = "$CONTROL/dynamic-security/v1";
/** v5 reason code of a DISCONNECT sent to a kicked client: Administrative action. */
export const KICK_REASON = 0x98;
/** Largest payload the publish operation takes, bytes. */
export const MAX_PUBLISH_BYTES = 256 * 1024;

/** Who asked, for the log. */
export interface WriteCaller {
  who: string;
  /** The remote address of the HTTP request. */
  from: string;
}

/** The broker's handler of a control topic (dynamic security's), if one is loaded. */
export function controlHandler(broker: Broker, topic: string): ControlHandler | undefined {
  return broker.controls.get(topic);
}

function error(status: number, message: string): ApiResponse {
  return { status, body: { error: message } };
}

function ok(body: unknown): ApiResponse {
  return { status: 200, body };
}

/**
 * Run one write. `parts` is the decoded path after the leading slash (["api", "clients", id, …]);
 * `body` the parsed JSON body (undefined when there was none).
 */
export async function adminWrite(
  broker: Broker,
  caller: WriteCaller,
  method: string,
  parts: string[],
  query: URLSearchParams,
  body: unknown,
): Promise<ApiResponse> {
  const by = `${caller.who} from ${caller.from}`;
  const log = (what: string) => broker.log.notice(`Admin API: ${by}: ${what}.`);
  if (method === "POST" && parts.length === 4 && parts[1] === "clients" && parts[3] === "kick") {
    const id = parts[2];
    const s = findSession(broker, id, query);
    const c = s?.connection;
    if (!c || c.state !== "open") {
      return error(404, `client ${JSON.stringify(id)} is not connected`);
    }
    log(`disconnected client ${id}`);
    c.close(KICK_REASON, "disconnected by the admin API");
    return ok({ id, kicked: true });
  }
  if (method === "DELETE" && parts.length === 3 && parts[1] === "clients") {
    const id = parts[2];
    const s = findSession(broker, id, query);
    if (!s) return error(404, `no session for client id ${JSON.stringify(id)}`);
    if (s.connection && s.connection.state === "open") {
      return error(409, `client ${JSON.stringify(id)} is connected: disconnect it first`);
    }
    log(`deleted the offline session of ${id}`);
    broker.endSession(s);
    return ok({ id, deleted: true });
  }
  if (method === "DELETE" && parts.length === 2 && parts[1] === "retained") {
    const topic = query.get("topic") ?? "";
    if (!validTopicName(topic)) return error(400, `invalid topic ${JSON.stringify(topic)}`);
    if (broker.retained.match(topic, Date.now()).length === 0) {
      return error(404, `no retained message on ${JSON.stringify(topic)}`);
    }
    log(`deleted the retained message on ${topic}`);
    // The retained store writes the deletion through to the persistent store.
    broker.retained.set(emptyRetained(topic));
    return ok({ topic, deleted: true });
  }
  if (method === "POST" && parts.length === 2 && parts[1] === "publish") {
    const msg = publishMessage(broker, body);
    if (typeof msg === "string") return error(400, msg);
    log(
      `published ${msg.payload.length} bytes on ${msg.topic} (QoS ${msg.qos}${
        msg.retain ? ", retained" : ""
      })`,
    );
    const receivers = broker.publish(msg);
    return ok({ topic: msg.topic, receivers });
  }
  if (method === "POST" && parts.length === 2 && parts[1] === "dynsec") {
    const handler = controlHandler(broker, DYNSEC_TOPIC);
    if (!handler) return error(404, "dynamic security is not configured");
    const commands = (body as { commands?: unknown } | undefined)?.commands;
    if (!Array.isArray(commands)) return error(400, 'expected {"commands":[…]}');
    const names = commands.map((c) => String((c as { command?: unknown })?.command)).join(", ");
    log(`dynamic-security commands: ${names}`);
    const principal: Principal = {
      clientId: "$midge/admin-api",
      username: caller.who,
      listener: undefined,
    };
    const answer = await handler.control(
      new TextEncoder().encode(JSON.stringify({ commands })),
      principal,
    );
    try {
      return ok(JSON.parse(new TextDecoder().decode(answer)));
    } catch {
      return error(502, "dynamic security answered with something that is not JSON");
    }
  }
  return error(405, `no write operation ${method} ${"/" + parts.join("/")}`);
}

function emptyRetained(topic: string): Message {
  return {
    topic,
    payload: new Uint8Array(0),
    qos: 0,
    retain: true,
    expiresAt: 0,
    origin: "",
  };
}

/** Reads and checks a publish request; a string says what is wrong. */
export function publishMessage(broker: Broker, body: unknown): Message | string {
  if (typeof body !== "object" || body === null) return "expected a JSON object";
  const b = body as Record<string, unknown>;
  const topic = b.topic;
  if (typeof topic !== "string" || !validTopicName(topic) || topic === "") {
    return `invalid topic ${JSON.stringify(topic)}`;
  }
  const qos = b.qos ?? 0;
  if (qos !== 0 && qos !== 1 && qos !== 2) return "qos: expected 0, 1 or 2";
  if (qos > broker.config.max_qos) return `qos: this broker's max_qos is ${broker.config.max_qos}`;
  const retain = b.retain ?? false;
  if (typeof retain !== "boolean") return "retain: expected true or false";
  if (retain && !broker.config.retain_available) return "retain: retain_available is false";
  const text = b.payload ?? "";
  if (typeof text !== "string") return "payload: expected a string";
  const encoding = b.encoding ?? "utf8";
  let payload: Uint8Array;
  if (encoding === "utf8") payload = new TextEncoder().encode(text);
  else if (encoding === "base64") payload = new Uint8Array(Buffer.from(text, "base64"));
  else return 'encoding: expected "utf8" or "base64"';
  if (payload.length > MAX_PUBLISH_BYTES) return `payload: more than ${MAX_PUBLISH_BYTES} bytes`;
  const props = properties(b.properties);
  if (typeof props === "string") return props;
  const expiry = props?.messageExpiryInterval;
  if (props) delete props.messageExpiryInterval;
  return {
    topic,
    payload,
    qos: qos as QoS,
    retain,
    properties: props && Object.keys(props).length ? props : undefined,
    expiresAt: expiry ? Date.now() + expiry * 1000 : 0,
    origin: "",
  };
}

/** The v5 properties a published message may carry, checked. */
function properties(p: unknown): Properties | undefined | string {
  if (p === undefined || p === null) return undefined;
  if (typeof p !== "object") return "properties: expected an object";
  const o = p as Record<string, unknown>;
  const out: Properties = {};
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (v === undefined || v === null || v === "") continue;
    switch (k) {
      case "payloadFormatIndicator":
        if (v !== 0 && v !== 1) return "payloadFormatIndicator: expected 0 or 1";
        out.payloadFormatIndicator = v;
        break;
      case "messageExpiryInterval":
        if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0xffffffff) {
          return "messageExpiryInterval: expected seconds 0-4294967295";
        }
        if (v) out.messageExpiryInterval = v as number;
        break;
      case "contentType":
        if (typeof v !== "string") return "contentType: expected a string";
        out.contentType = v;
        break;
      case "responseTopic":
        if (typeof v !== "string" || !validTopicName(v)) return "responseTopic: invalid topic";
        out.responseTopic = v;
        break;
      case "correlationData":
        if (typeof v !== "string") return "correlationData: expected a UTF-8 string";
        out.correlationData = new TextEncoder().encode(v);
        break;
      case "userProperties":
        if (
          !Array.isArray(v) ||
          !v.every((e) =>
            Array.isArray(e) && e.length === 2 && typeof e[0] === "string" &&
            typeof e[1] === "string"
          )
        ) return "userProperties: expected [[name, value], …]";
        if (v.length) out.userProperties = v as [string, string][];
        break;
      default:
        return `properties: unknown or not allowed here: ${k}`;
    }
  }
  return out;
}
