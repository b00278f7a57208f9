/** Test helpers: a broker on port 0 in this process, and MQTT.js clients connected to it. */
import process from "node:process";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import type { Broker } from "../../src/broker/broker.ts";
import { assembleBroker } from "../../src/assemble.ts";
import type { BridgeManager } from "../../src/bridge/bridge.ts";
import {
  BRIDGE_KEYS,
  type BridgeConfig,
  type Config,
  defaults,
  GLOBAL_KEYS,
  LISTENER_KEYS,
} from "../../src/config/schema.ts";
import { createServer } from "node:net";
import { Logger, silentLogger } from "../../src/sys/log.ts";

export interface TestBroker {
  broker: Broker;
  /** The broker's bridges ([[bridge]] tables), when `startBroker` made it. */
  bridges?: BridgeManager;
  port: number;
  url: string;
  stop(): Promise<void>;
}

/** The default configuration with one listener on 127.0.0.1:0, plus `over`. */
export function testConfig(over: Partial<Config> = {}): Config {
  return {
    ...defaults(GLOBAL_KEYS),
    file: "<test>",
    persistence: false,
    listeners: [{ ...defaults(LISTENER_KEYS), port: 0 }],
    bridges: [],
    cluster: null,
    ...over,
  };
}

/** Start a broker on an OS-chosen port. Set MIDGE_TEST_LOG=1 to see its log. */
export async function startBroker(over: Partial<Config> = {}): Promise<TestBroker> {
  const log = process.env.MIDGE_TEST_LOG ? new Logger(["all"]) : silentLogger;
  const { broker, bridges } = assembleBroker(testConfig(over), log);
  const [l] = await broker.start();
  return {
    broker,
    bridges,
    port: l.port,
    url: `mqtt://127.0.0.1:${l.port}`,
    stop: () => broker.stop(),
  };
}

/** Connect an MQTT.js client (no automatic reconnect) and wait for CONNACK. */
export async function connect(tb: TestBroker, opts: IClientOptions = {}): Promise<MqttClient> {
  return await mqtt.connectAsync(tb.url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
}

/** End clients without waiting for anything the broker still owes them. */
export async function endAll(...clients: (MqttClient | undefined)[]): Promise<void> {
  await Promise.all(clients.map((c) => c ? c.endAsync(true).catch(() => {}) : undefined));
}

/**
 * Connect and start collecting messages before CONNACK, so messages the broker sends right after
 * CONNACK (a resumed session's queue) are not missed. Resolves with the client, its collector and
 * the CONNACK packet.
 */
export function connectCollect(tb: TestBroker, opts: IClientOptions = {}): Promise<{
  client: MqttClient;
  got: ReturnType<typeof collect>;
  // deno-lint-ignore no-explicit-any
  connack: any;
}> {
  const client = mqtt.connect(tb.url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  const got = collect(client);
  return new Promise((resolve, reject) => {
    client.once("connect", (connack) => resolve({ client, got, connack }));
    client.once("error", reject);
  });
}

export interface Received {
  topic: string;
  payload: string;
  // deno-lint-ignore no-explicit-any
  packet: any;
}

/** Collect messages a client receives; `next(n)` resolves once n have arrived (or rejects after ms). */
export function collect(client: MqttClient): {
  messages: Received[];
  next(n?: number, ms?: number): Promise<Received[]>;
} {
  const messages: Received[] = [];
  let waiters: { n: number; resolve: (m: Received[]) => void }[] = [];
  client.on("message", (topic, payload, packet) => {
    messages.push({ topic, payload: payload.toString(), packet });
    waiters = waiters.filter((w) => {
      if (messages.length >= w.n) {
        w.resolve(messages.slice());
        return false;
      }
      return true;
    });
  });
  return {
    messages,
    next(n = 1, ms = 3000) {
      if (messages.length >= n) return Promise.resolve(messages.slice());
      return new Promise((resolve, reject) => {
        const w = { n, resolve };
        waiters.push(w);
        setTimeout(() => {
          waiters = waiters.filter((x) => x !== w);
          reject(
            new Error(
              `expected ${n} messages, got ${messages.length}: ${
                JSON.stringify(messages.map((m) => m.topic + "=" + m.payload))
              }`,
            ),
          );
        }, ms);
      });
    },
  };
}

/** Resolve after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Wait until `fn()` is true (polling every 20 ms), or fail naming `what` after `ms`. */
export async function until(fn: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A port that was free a moment ago (for programs that cannot be told to use port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A [[bridge]] configuration towards 127.0.0.1:`port` with the given topic lines. */
export function bridgeTo(
  port: number,
  topic: string[],
  over: Partial<BridgeConfig> = {},
): BridgeConfig {
  return {
    ...defaults(BRIDGE_KEYS),
    name: "b1",
    addresses: [`127.0.0.1:${port}`],
    topic,
    restart_timeout: "0.2 0.5",
    ...over,
  };
}
