/**
 * A scripted MQTT server for client tests: it parses what the client sends with `mqtt-packet`
 * (an independent codec) and lets the test answer packet by packet, so client state machines
 * (acks, retries, keep-alive, refusals) can be driven exactly.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";

// deno-lint-ignore no-explicit-any
export type Pkt = any;

export interface FakeConn {
  socket: Socket;
  /** Packets received so far, in order. */
  received: Pkt[];
  /** Resolves with the next received packet of `cmd` (already received ones count once each). */
  next(cmd: string, ms?: number): Promise<Pkt>;
  send(packet: Pkt): void;
  close(): void;
}

export interface FakeBroker {
  port: number;
  /** Resolves with the next accepted connection. */
  accept(ms?: number): Promise<FakeConn>;
  stop(): Promise<void>;
}

/** Starts a scripted server on 127.0.0.1:0 speaking protocol `version` (3, 4 or 5). */
export async function fakeBroker(version = 4): Promise<FakeBroker> {
  const sockets = new Set<Socket>();
  const waiting: ((c: FakeConn) => void)[] = [];
  const ready: FakeConn[] = [];
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    const parser = mqttPacket.parser({ protocolVersion: version });
    const received: Pkt[] = [];
    const taken = new Set<number>();
    let waiters: {
      cmd: string;
      resolve: (p: Pkt) => void;
      timer?: ReturnType<typeof setTimeout>;
    }[] = [];
    const match = () => {
      waiters = waiters.filter((w) => {
        const i = received.findIndex((p, k) => !taken.has(k) && p.cmd === w.cmd);
        if (i < 0) return true;
        taken.add(i);
        clearTimeout(w.timer);
        w.resolve(received[i]);
        return false;
      });
    };
    parser.on("packet", (p: Pkt) => {
      received.push(p);
      match();
    });
    socket.on("data", (d) => parser.parse(d as Buffer));
    const conn: FakeConn = {
      socket,
      received,
      next(cmd, ms = 3000) {
        return new Promise((resolve, reject) => {
          const w: (typeof waiters)[number] = { cmd, resolve };
          waiters.push(w);
          w.timer = setTimeout(() => {
            if (waiters.includes(w)) {
              waiters = waiters.filter((x) => x !== w);
              reject(
                new Error(`no ${cmd}; got ${received.map((p) => p.cmd).join(", ") || "nothing"}`),
              );
            }
          }, ms);
          match();
        });
      },
      send(packet) {
        socket.write(mqttPacket.generate(packet, { protocolVersion: version }));
      },
      close() {
        socket.destroy();
      },
    };
    const w = waiting.shift();
    if (w) w(conn);
    else ready.push(conn);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    accept(ms = 3000) {
      const c = ready.shift();
      if (c) return Promise.resolve(c);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no connection")), ms);
        waiting.push((c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
    },
    stop() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
