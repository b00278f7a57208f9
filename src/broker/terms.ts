/**
 * The terms of a client: what its CONNECT asked for that changes how the broker talks to it (v5
 * limits, bridge mode). The CONNECT handler sets them; a delivery sink is held to them.
 */

/**
 * What a client's CONNECT asked for that changes how the broker talks to it. Most clients ask for
 * nothing, and share DEFAULT_TERMS; the CONNECT handler makes an object for the others.
 */
export interface ClientTerms {
  /** v5: the client's Receive Maximum, which the broker's QoS 1/2 window keeps to [MQTT-3.3.4-9 v5]. */
  readonly receiveMax: number;
  /** v5: the client's Maximum Packet Size [MQTT-3.1.2-24 v5]; 0 = no limit. */
  readonly maxPacket: number;
  /** v5: Request Problem Information [MQTT-3.1.2-29 v5]. */
  readonly problemInfo: boolean;
  /** v5: the client's Topic Alias Maximum: aliases the broker may use when sending. */
  readonly aliasMaxOut: number;
  /** The client announced itself as a bridge (protocol level bit 0x80, Mosquitto's try_private). */
  readonly bridgeMode: boolean;
}

/** The terms of a client that asked for nothing beyond the defaults. */
export const DEFAULT_TERMS: ClientTerms = Object.freeze({
  receiveMax: 65535,
  maxPacket: 0,
  problemInfo: true,
  aliasMaxOut: 0,
  bridgeMode: false,
});

/** `t`, or DEFAULT_TERMS when `t` asks for nothing else: most clients share one object. */
export function sharedTerms(t: ClientTerms): ClientTerms {
  for (const k in DEFAULT_TERMS) {
    const key = k as keyof ClientTerms;
    if (t[key] !== DEFAULT_TERMS[key]) return t;
  }
  return DEFAULT_TERMS;
}
