/**
 * MQTT control packets as the codec hands them to the broker and takes them back to encode.
 *
 * Field names follow `mqtt-packet` where it has one (`cmd`, `messageId`, `clean`, `keepalive`,
 * `granted`, …) so that differential tests compare field for field. Two deliberate differences:
 * user properties are an ordered list of pairs (the spec requires their order to be kept
 * [MQTT-3.3.2-18 v5]), and every binary field is a `Uint8Array`.
 */

/** 3 = MQTT 3.1 ("MQIsdp"), 4 = MQTT 3.1.1, 5 = MQTT 5.0. */
export type ProtocolVersion = 3 | 4 | 5;
export type QoS = 0 | 1 | 2;

/** Control packet type numbers (first byte, high nibble). */
export const PacketType = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
  AUTH: 15,
} as const;

/** Every MQTT 5 property; absent means "not present in the packet". */
export interface Properties {
  payloadFormatIndicator?: number; // 0x01 byte
  messageExpiryInterval?: number; // 0x02 u32
  contentType?: string; // 0x03
  responseTopic?: string; // 0x08
  correlationData?: Uint8Array; // 0x09
  /** 0x0B varint; PUBLISH may carry several (one per matching subscription) */
  subscriptionIdentifier?: number | number[];
  sessionExpiryInterval?: number; // 0x11 u32
  assignedClientIdentifier?: string; // 0x12
  serverKeepAlive?: number; // 0x13 u16
  authenticationMethod?: string; // 0x15
  authenticationData?: Uint8Array; // 0x16
  requestProblemInformation?: number; // 0x17 byte
  willDelayInterval?: number; // 0x18 u32
  requestResponseInformation?: number; // 0x19 byte
  responseInformation?: string; // 0x1A
  serverReference?: string; // 0x1C
  reasonString?: string; // 0x1F
  receiveMaximum?: number; // 0x21 u16
  topicAliasMaximum?: number; // 0x22 u16
  topicAlias?: number; // 0x23 u16
  maximumQoS?: number; // 0x24 byte
  retainAvailable?: number; // 0x25 byte
  userProperties?: [string, string][]; // 0x26, repeatable, order kept
  maximumPacketSize?: number; // 0x27 u32
  wildcardSubscriptionAvailable?: number; // 0x28 byte
  subscriptionIdentifiersAvailable?: number; // 0x29 byte
  sharedSubscriptionAvailable?: number; // 0x2A byte
}

export interface Will {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: Properties;
}

export interface ConnectPacket {
  cmd: "connect";
  /** Protocol name as sent: "MQTT" (3.1.1, 5.0) or "MQIsdp" (3.1). */
  protocolId: string;
  protocolVersion: ProtocolVersion;
  /** A bridge sets bit 7 of the protocol level (Mosquitto's try_private); version is without it. */
  bridgeMode: boolean;
  clean: boolean;
  keepalive: number;
  clientId: string;
  will?: Will;
  username?: string;
  password?: Uint8Array;
  properties?: Properties;
}

export interface ConnackPacket {
  cmd: "connack";
  sessionPresent: boolean;
  /** v3 return code or v5 reason code. */
  reasonCode: number;
  properties?: Properties;
}

export interface PublishPacket {
  cmd: "publish";
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  /** Present for QoS 1 and 2. */
  messageId?: number;
  properties?: Properties;
}

/** PUBACK, PUBREC, PUBREL, PUBCOMP: a packet id and, in v5, a reason code. */
export interface AckPacket {
  cmd: "puback" | "pubrec" | "pubrel" | "pubcomp";
  messageId: number;
  /** v5 only; 0 when omitted on the wire. */
  reasonCode?: number;
  properties?: Properties;
}

export interface Subscription {
  topic: string;
  qos: QoS;
  /** v5 No Local. */
  nl?: boolean;
  /** v5 Retain As Published. */
  rap?: boolean;
  /** v5 Retain Handling 0, 1 or 2. */
  rh?: number;
}

export interface SubscribePacket {
  cmd: "subscribe";
  messageId: number;
  subscriptions: Subscription[];
  properties?: Properties;
}

export interface SubackPacket {
  cmd: "suback";
  messageId: number;
  /** Granted QoS or failure/reason code per subscription. */
  granted: number[];
  properties?: Properties;
}

export interface UnsubscribePacket {
  cmd: "unsubscribe";
  messageId: number;
  unsubscriptions: string[];
  properties?: Properties;
}

export interface UnsubackPacket {
  cmd: "unsuback";
  messageId: number;
  /** v5 reason code per topic filter; absent for v3. */
  granted?: number[];
  properties?: Properties;
}

export interface PingreqPacket {
  cmd: "pingreq";
}
export interface PingrespPacket {
  cmd: "pingresp";
}

export interface DisconnectPacket {
  cmd: "disconnect";
  /** v5 only; 0 when omitted on the wire. */
  reasonCode?: number;
  properties?: Properties;
}

export interface AuthPacket {
  cmd: "auth";
  reasonCode: number;
  properties?: Properties;
}

export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | AckPacket
  | SubscribePacket
  | SubackPacket
  | UnsubscribePacket
  | UnsubackPacket
  | PingreqPacket
  | PingrespPacket
  | DisconnectPacket
  | AuthPacket;

/** MQTT 5 reason codes used by the codec and broker. */
export const ReasonCode = {
  Success: 0x00,
  NormalDisconnection: 0x00,
  GrantedQoS0: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  DisconnectWithWill: 0x04,
  NoMatchingSubscribers: 0x10,
  NoSubscriptionExisted: 0x11,
  ContinueAuthentication: 0x18,
  ReAuthenticate: 0x19,
  UnspecifiedError: 0x80,
  MalformedPacket: 0x81,
  ProtocolError: 0x82,
  ImplementationSpecificError: 0x83,
  UnsupportedProtocolVersion: 0x84,
  ClientIdentifierNotValid: 0x85,
  BadUserNameOrPassword: 0x86,
  NotAuthorized: 0x87,
  ServerUnavailable: 0x88,
  ServerBusy: 0x89,
  Banned: 0x8a,
  ServerShuttingDown: 0x8b,
  BadAuthenticationMethod: 0x8c,
  KeepAliveTimeout: 0x8d,
  SessionTakenOver: 0x8e,
  TopicFilterInvalid: 0x8f,
  TopicNameInvalid: 0x90,
  PacketIdentifierInUse: 0x91,
  PacketIdentifierNotFound: 0x92,
  ReceiveMaximumExceeded: 0x93,
  TopicAliasInvalid: 0x94,
  PacketTooLarge: 0x95,
  MessageRateTooHigh: 0x96,
  QuotaExceeded: 0x97,
  AdministrativeAction: 0x98,
  PayloadFormatInvalid: 0x99,
  RetainNotSupported: 0x9a,
  QoSNotSupported: 0x9b,
  UseAnotherServer: 0x9c,
  ServerMoved: 0x9d,
  SharedSubscriptionsNotSupported: 0x9e,
  ConnectionRateExceeded: 0x9f,
  MaximumConnectTime: 0xa0,
  SubscriptionIdentifiersNotSupported: 0xa1,
  WildcardSubscriptionsNotSupported: 0xa2,
} as const;

/** MQTT 3.1/3.1.1 CONNACK return codes. */
export const ConnackCodeV3 = {
  Accepted: 0,
  UnacceptableProtocolVersion: 1,
  IdentifierRejected: 2,
  ServerUnavailable: 3,
  BadUserNameOrPassword: 4,
  NotAuthorized: 5,
} as const;

/** A decode failure: the connection that sent it is closed (v5: DISCONNECT with `reasonCode`). */
export interface DecodeError {
  /** v5 reason code: 0x81 malformed, 0x82 protocol error, 0x95 packet too large, … */
  reasonCode: number;
  /** One line for the log, naming the rule broken, e.g. "[MQTT-3.3.2-2] wildcard in PUBLISH topic". */
  message: string;
}

/** What one call to `Decoder.push` yields for one socket read. */
export interface DecodeResult {
  /** Every complete packet in the read (and the carried tail), in order. */
  packets: Packet[];
  /** Set when the stream is invalid; packets before the bad one are still returned. */
  error?: DecodeError;
}
