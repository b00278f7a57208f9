/**
 * A session as it moves between nodes: the JSON form of the record restore.ts makes and
 * rebuilds sessions from (`recordSession`, `restoreSession`), messages as base64 envelopes.
 */
import { Buffer } from "node:buffer";
import type { SessionRecord } from "../broker/restore.ts";
import { FABRIC_SEQ } from "../broker/message.ts";
import type { StoredClientMessage } from "../store/types.ts";
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
    messages: encodeMessages(r.messages),
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
  o.messages = decodeMessages(o.messages);
  return o as SessionRecord;
}

/** Queued or in-flight messages in their wire form (envelopes keep each message's `fid`). */
export function encodeMessages(ms: StoredClientMessage[]): unknown[] {
  return ms.map((m) => {
    const fid = m.msg.fid ?? 0;
    const env = encodeEnvelope(m.msg, Math.floor(fid / FABRIC_SEQ), fid % FABRIC_SEQ, true);
    return { ...m, msg: b64(env), at: m.msg.at, again: m.msg.replayed };
  });
}

/** The inverse of `encodeMessages`. */
export function decodeMessages(raw: unknown): StoredClientMessage[] {
  if (!Array.isArray(raw)) throw new Error("messages: expected an array");
  return raw.map(({ at, again, ...m }: { msg: string; at?: number; again?: boolean }) => {
    const msg = decodeEnvelope(unb64(m.msg), null).msg;
    if (msg.fid === 0) delete msg.fid;
    if (typeof at === "number") msg.at = at;
    if (again === true) msg.replayed = true;
    return { ...m, msg } as StoredClientMessage;
  });
}
