/**
 * Packet logging in Mosquitto's words (log_type debug, `-v`): `Received PUBLISH from c1 (d0, q1,
 * r0, m3, 'a/b', ... (5 bytes))`, `Sending CONNACK to c1 (0, 0)` and the rest, with Mosquitto's
 * formats for each packet type (src/handle_*.c, lib/send_*.c). The connection calls these only
 * when debug logging is on, so they cost nothing otherwise.
 */
import type { ConnectPacket, Packet } from "../codec/types.ts";
import { PUBACK, PUBCOMP, PUBREC, PUBREL } from "../codec/encoder.ts";

/** Mosquitto's PUBLISH summary: `(d0, q1, r0, m3, 'a/b', ... (5 bytes))`. */
export function publishSummary(
  dup: boolean,
  qos: number,
  retain: boolean,
  id: number,
  topic: string,
  bytes: number,
): string {
  return `(d${dup ? 1 : 0}, q${qos}, r${retain ? 1 : 0}, m${id}, '${topic}', ... (${bytes} bytes))`;
}

/** Mosquitto's lines about a CONNECT's will, logged when the client is accepted. */
export function willLines(p: ConnectPacket): string[] {
  const w = p.will;
  if (!w) return ["No will message specified."];
  return [
    `Will message specified (${w.payload.length} bytes) (r${w.retain ? 1 : 0}, q${w.qos}).`,
    `\t${w.topic}`,
  ];
}

/** The lines Mosquitto logs for a packet received from client `id`. */
export function receivedLines(id: string, p: Packet): string[] {
  switch (p.cmd) {
    case "publish":
      return [
        `Received PUBLISH from ${id} ${
          publishSummary(p.dup, p.qos, p.retain, p.messageId ?? 0, p.topic, p.payload.length)
        }`,
      ];
    case "puback":
    case "pubcomp":
      return [
        `Received ${p.cmd.toUpperCase()} from ${id} (Mid: ${p.messageId}, RC:${p.reasonCode ?? 0})`,
      ];
    case "pubrec":
    case "pubrel":
      return [`Received ${p.cmd.toUpperCase()} from ${id} (Mid: ${p.messageId})`];
    case "subscribe":
      return [
        `Received SUBSCRIBE from ${id}`,
        ...p.subscriptions.map((s) => `\t${s.topic} (QoS ${s.qos})`),
      ];
    case "unsubscribe":
      return [`Received UNSUBSCRIBE from ${id}`, ...p.unsubscriptions.map((t) => `\t${t}`)];
    case "pingreq":
      return [`Received PINGREQ from ${id}`];
    case "disconnect":
      return [`Received DISCONNECT from ${id}`];
    case "auth":
      return [
        `Received AUTH from ${id} (rc${p.reasonCode}, ${p.properties?.authenticationMethod ?? ""})`,
      ];
    default:
      return [];
  }
}

/** The line Mosquitto logs for a packet sent to client `id` (PUBLISH: see publishSummary). */
export function sentLine(id: string, p: Packet): string | undefined {
  switch (p.cmd) {
    case "connack":
      return `Sending CONNACK to ${id} (${p.sessionPresent ? 1 : 0}, ${p.reasonCode})`;
    case "suback":
      return `Sending SUBACK to ${id}`;
    case "unsuback":
      return `Sending UNSUBACK to ${id}`;
    case "pingresp":
      return `Sending PINGRESP to ${id}`;
    case "disconnect":
      return `Sending DISCONNECT to ${id} (rc${p.reasonCode ?? 0})`;
    case "auth":
      return `Sending AUTH to ${id} (rc${p.reasonCode}, ${
        p.properties?.authenticationMethod ?? ""
      })`;
    case "publish":
      return `Sending PUBLISH to ${id} ${
        publishSummary(p.dup, p.qos, p.retain, p.messageId ?? 0, p.topic, p.payload.length)
      }`;
    case "puback":
    case "pubrec":
      return `Sending ${p.cmd.toUpperCase()} to ${id} (m${p.messageId}, rc${p.reasonCode ?? 0})`;
    case "pubrel":
    case "pubcomp":
      return `Sending ${p.cmd.toUpperCase()} to ${id} (m${p.messageId})`;
    default:
      return undefined;
  }
}

/** The line for an acknowledgement sent by its first byte (PUBACK … PUBCOMP). */
export function sentAckLine(id: string, first: number, mid: number, rc: number): string {
  if (first === PUBACK) return `Sending PUBACK to ${id} (m${mid}, rc${rc})`;
  if (first === PUBREC) return `Sending PUBREC to ${id} (m${mid}, rc${rc})`;
  if (first === PUBREL) return `Sending PUBREL to ${id} (m${mid})`;
  if (first === PUBCOMP) return `Sending PUBCOMP to ${id} (m${mid})`;
  return `Sending packet 0x${first.toString(16)} to ${id} (m${mid})`;
}
