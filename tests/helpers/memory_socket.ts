/**
 * Test helper: a client connected to a broker through memory, without the network. The broker's
 * side is a `TransportSocket` (src/transport/types.ts) handed to `Broker.accept`, as a listener
 * would; the client's side encodes and parses packets with mqtt-packet, a codec this project did
 * not write.
 */
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import type { Broker } from "../../src/broker/broker.ts";
import type { SocketHandlers, TransportSocket } from "../../src/transport/types.ts";

// deno-lint-ignore no-explicit-any
type AnyPacket = any;

/** The broker's end of an in-memory connection. */
class MemorySocket implements TransportSocket {
  readonly remoteAddress = "memory";
  readonly remotePort = 0;
  readonly protocol = "memory";
  bufferedAmount = 0;
  readonly #peer: MemoryClient;

  constructor(peer: MemoryClient) {
    this.#peer = peer;
  }

  write(data: Uint8Array): void {
    // Copied: the broker may reuse its buffer once write returns (see writeFrom).
    this.#peer.receive(data.slice());
  }

  end(): void {
    this.#peer.brokerClosed();
  }

  destroy(): void {
    this.#peer.brokerClosed();
  }
}

/** The client's end: send packets, wait for the broker's. */
export class MemoryClient {
  /** Every packet the broker sent, in order. */
  readonly received: AnyPacket[] = [];
  /** True once the broker closed the connection or the client dropped it. */
  closed = false;
  #handlers: SocketHandlers | null = null;
  readonly #parser;
  readonly #version: number;
  #waiters: (() => void)[] = [];

  constructor(version: 3 | 4 | 5) {
    this.#version = version;
    this.#parser = mqttPacket.parser({ protocolVersion: version });
    this.#parser.on("packet", (p: AnyPacket) => {
      this.received.push(p);
      this.#wake();
    });
  }

  /** Connects a socket to `broker` (as a listener with no configuration would). */
  attach(broker: Broker): void {
    const h = broker.accept(new MemorySocket(this));
    if (!h) throw new Error("the broker refused the connection");
    this.#handlers = h;
  }

  /** Sends one packet (mqtt-packet's shape, e.g. `{ cmd: "pingreq" }`). */
  send(p: AnyPacket): void {
    if (this.closed) throw new Error("closed");
    const bytes = mqttPacket.generate(p, { protocolVersion: this.#version });
    this.#handlers!.onData(new Uint8Array(bytes));
  }

  /** The connection breaks without a DISCONNECT (the broker sees its socket close). */
  drop(): void {
    if (this.closed) return;
    this.closed = true;
    this.#handlers!.onClose();
    this.#wake();
  }

  /** Resolves with the first packet received that `match` accepts (waiting for it if need be). */
  async next(match: (p: AnyPacket) => boolean, what: string, ms = 3000): Promise<AnyPacket> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.received.findIndex(match);
      if (i >= 0) return this.received.splice(i, 1)[0];
      if (this.closed) throw new Error(`closed while waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  /** Resolves once the broker has closed the connection. */
  async closedByBroker(ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error(`not closed within ${ms} ms`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  receive(data: Uint8Array): void {
    this.#parser.parse(Buffer.from(data));
  }

  brokerClosed(): void {
    if (this.closed) return;
    this.closed = true;
    // The transport reports the close after the write that preceded it, as a socket would.
    queueMicrotask(() => this.#handlers?.onClose());
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const r of w) r();
  }
}

/**
 * A client connected to `broker` through memory, its CONNECT sent and its CONNACK received.
 * `connect` is mqtt-packet's CONNECT (clientId, keepalive, will, properties, …).
 */
export async function memoryConnect(
  broker: Broker,
  connect: AnyPacket,
  version: 3 | 4 | 5 = 4,
): Promise<{ client: MemoryClient; connack: AnyPacket }> {
  const client = new MemoryClient(version);
  client.attach(broker);
  client.send({
    cmd: "connect",
    protocolId: version === 3 ? "MQIsdp" : "MQTT",
    protocolVersion: version,
    clean: true,
    keepalive: 0,
    ...connect,
  });
  const connack = await client.next((p) => p.cmd === "connack", "CONNACK");
  return { client, connack };
}
