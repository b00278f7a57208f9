/**
 * A session as it moves between nodes: the JSON form of the record restore.ts makes and
 * rebuilds sessions from (`recordSession`, `restoreSession`), messages as base64 envelopes.
 */
import { Buffer } from "node:buffer";
import type { SessionRecord } from "../broker/restore.ts";
import { decodeEnvelope, encodeEnvelope } from "./envelope.ts";

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

/** The record as JSON text (payloads, will and correlation data in base64). */
export function encodeRecord(r: SessionRecord): string {
  const will = r.session.will
    ? {
      ...r.session.will,
      payload: b64(r.session.will.payload),
      properties: r.session.will.properties &&
        {
          ...r.session.will.properties,
          correlationData: r.session.will.properties.correlationData &&
            b64(r.session.will.properties.correlationData),
        },
    }
    : null;
  return JSON.stringify({
    ...r,
    session: { ...r.session, will },
    messages: r.messages.map((m) => ({ ...m, msg: b64(encodeEnvelope(m.msg, 0, 0, true)) })),
  });
}

/** The inverse of `encodeRecord`; throws on malformed input. */
export function decodeRecord(text: string): SessionRecord {
  const o = JSON.parse(text);
  const w = o.session.will;
  if (w) {
    w.payload = unb64(w.payload);
    if (w.properties?.correlationData) {
      w.properties.correlationData = unb64(w.properties.correlationData);
    }
  }
  o.messages = o.messages.map((m: { msg: string }) => ({
    ...m,
    msg: decodeEnvelope(unb64(m.msg), null).msg,
  }));
  return o as SessionRecord;
}
