/** Picks the fastest TCP listener for the runtime: Bun.listen on Bun, node:net elsewhere. */
import { hasBunListen, listenBun } from "./bun.ts";
import { listenNode } from "./node.ts";
import type { AcceptFn, Listener, ListenOptions } from "./types.ts";

/** Start a TCP listener. `MIDGE_TRANSPORT=node` forces node:net (for comparisons). */
export function listenTcp(opts: ListenOptions, accept: AcceptFn): Promise<Listener> {
  const forced = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process
    ?.env?.MIDGE_TRANSPORT;
  if (forced !== "node" && hasBunListen()) return listenBun(opts, accept);
  return listenNode(opts, accept);
}
