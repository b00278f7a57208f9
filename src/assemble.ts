/**
 * Assembly: a broker built from its parts. The core (src/broker/) takes every part it does not
 * own from here: the auth chain of src/auth/, the SQLite store of src/store/, the bridges of
 * src/bridge/, and (from a cluster, src/cluster/) the fabric, session registry and retained
 * store. `midge serve` and the tests build their brokers with it.
 */
import { join } from "node:path";
import type { Config } from "./config/schema.ts";
import { Auth } from "./auth/auth.ts";
import { Broker, type BrokerParts } from "./broker/broker.ts";
import { errorText } from "./broker/guard.ts";
import { SqliteStore } from "./store/sqlite.ts";
import { BridgeManager } from "./bridge/bridge.ts";
import { type Logger, silentLogger } from "./sys/log.ts";

/** The parts a caller may give; the rest are made here (see `BrokerParts`). */
export type GivenParts = Partial<BrokerParts>;

/** A broker and the parts made for it that its starter may want to reach. */
export interface Assembled {
  broker: Broker;
  /** The bridges of the configuration's [[bridge]] tables (started with the broker). */
  bridges: BridgeManager;
}

/**
 * Build a broker on `config`: the auth chain of its listeners, the SQLite store of its
 * persistence settings (opened by `Broker.start`), and its bridges, besides the `parts` given.
 */
export function assembleBroker(
  config: Config,
  log: Logger = silentLogger,
  parts: GivenParts = {},
): Assembled {
  const broker = new Broker(config, log, {
    ...parts,
    auth: parts.auth ?? new Auth(config, log),
    openStore: parts.openStore ?? (() => openSqlite(config, log)),
  });
  const bridges = new BridgeManager(broker);
  broker.attach(bridges);
  return { broker, bridges };
}

/** The SQLite store of `persistence_location`/`persistence_file`, its errors logged. */
function openSqlite(config: Config, log: Logger): { store: SqliteStore; where: string } {
  const file = join(config.persistence_location, config.persistence_file);
  const store = new SqliteStore(file, config.persistence_sync);
  store.onError = (e) => log.error(`Persistence: commit to ${file} failed: ${e}`);
  store.onCallbackError = (e) =>
    log.error(`Internal error after a commit to ${file}: ${errorText(e)}`);
  return { store, where: file };
}
