/** A raw MQTT connection for tests that must send what a well-behaved client never would. */
import { connect as netConnect, type Socket } from "node:net";
import mqttPacket from "mqtt-packet";
import type { Buffer } from "node:buffer";

// deno-lint-ignore no-explicit-any
export type AnyPacket = any;

export interface RawClient {
  socket: Socket;
  /** Packets received so far, parsed by mqtt-packet (an independent codec). */
  packets: AnyPacket[];
  /** Send raw bytes, or a packet object encoded by mqtt-packet. */
  send(data: Uint8Array | AnyPacket): void;
  /** Wait for the next packet with this cmd (or any, when omitted). */
  next(cmd?: string, ms?: number): Promise<AnyPacket>;
  /** Resolves when the broker closes the connection. */
  closed: Promise<void>;
  close(): void;
}

/**
 * Open a TCP connection to the broker; packets are parsed at `protocolVersion`. `localAddress`
 * (another 127.x.y.z) makes refusals count against an address of their own.
 */
export function rawConnect(
  port: number,
  protocolVersion = 4,
  localAddress?: string,
): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({
      port,
      host: "127.0.0.1",
      ...(localAddress ? { localAddress } : {}),
    });
    const parser = mqttPacket.parser({ protocolVersion });
    const packets: AnyPacket[] = [];
    let taken = 0;
    let wake: (() => void) | null = null;
    parser.on("packet", (p: AnyPacket) => {
      packets.push(p);
      wake?.();
    });
    parser.on("error", () => socket.destroy());
    socket.on("data", (d: Buffer) => parser.parse(d));
    let closedResolve!: () => void;
    const closed = new Promise<void>((r) => (closedResolve = r));
    socket.on("close", () => {
      closedResolve();
      wake?.();
    });
    socket.on("error", () => {});
    socket.once("connect", () => {
      const rc: RawClient = {
        socket,
        packets,
        closed,
        send(data) {
          if (data instanceof Uint8Array) socket.write(data);
          else socket.write(mqttPacket.generate(data, { protocolVersion }));
        },
        async next(cmd, ms = 3000) {
          const deadline = Date.now() + ms;
          while (true) {
            while (taken < packets.length) {
              const p = packets[taken++];
              if (!cmd || p.cmd === cmd) return p;
            }
            if (socket.destroyed || Date.now() > deadline) {
              throw new Error(`no ${cmd ?? "packet"} (got ${packets.map((p) => p.cmd).join(",")})`);
            }
            await new Promise<void>((r) => {
              wake = r;
              setTimeout(r, Math.max(1, deadline - Date.now()));
            });
            wake = null;
          }
        },
        close() {
          socket.destroy();
        },
      };
      resolve(rc);
    });
    socket.once("error", reject);
  });
}

/** A CONNECT packet object for mqtt-packet. */
export function connectPacket(
  clientId: string,
  protocolVersion = 4,
  extra: AnyPacket = {},
): AnyPacket {
  return {
    cmd: "connect",
    protocolId: protocolVersion === 3 ? "MQIsdp" : "MQTT",
    protocolVersion,
    clean: true,
    clientId,
    keepalive: 60,
    ...extra,
  };
}
