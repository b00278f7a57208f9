/**
 * The kinds of link an `auth_chain` can name, and how each is made for a listener. Links whose
 * settings are the same for two listeners are made once and shared (one password file read,
 * one JWKS refreshed, one HTTP connection pool).
 */
import type { Config, ListenerConfig } from "../config/schema.ts";
import { listenerSecurity } from "../config/listener_security.ts";
import type { Logger } from "../sys/log.ts";
import type { Link } from "./chain.ts";
import { AclFileLink } from "./acl_link.ts";
import { PasswordFileLink } from "./password_link.ts";
import { JwtLink } from "./jwt.ts";
import { HttpLink } from "./http.ts";

/** What a link is made from. */
export interface LinkContext {
  readonly config: Config;
  /** The listener the chain is for; undefined for the default chain (bridges, restored sessions). */
  readonly listener: ListenerConfig | undefined;
  readonly log: Logger;
  /** Whether clients without a user name may connect through a listener. */
  anonymousAllowed(listener: ListenerConfig | undefined): boolean;
  /** Whether a plugin (dynamic security) is asked before the configured links. */
  readonly afterPlugin: boolean;
}

/** One kind of link: `key` says which listeners can share one; `make` builds it. */
export interface LinkKind {
  key(ctx: LinkContext): string;
  make(ctx: LinkContext): Link;
}

/**
 * A file setting for a listener: its own with `per_listener_settings`, else the top-level one
 * (src/config/listener_security.ts decides).
 */
export function fileSetting(
  config: Config,
  listener: ListenerConfig | undefined,
  key: "password_file" | "acl_file",
): string {
  return listenerSecurity(config, listener)[key];
}

/** Kinds of link by the name `auth_chain` uses. */
export const LINK_KINDS: Record<string, LinkKind> = {
  password_file: {
    key: (ctx) =>
      `password_file:${fileSetting(ctx.config, ctx.listener, "password_file")}:${ctx.afterPlugin}`,
    make: (ctx) => {
      const { config, listener } = ctx;
      return new PasswordFileLink(
        () => fileSetting(config, listener, "password_file"),
        (l) => ctx.anonymousAllowed(l),
        ctx.log,
        ctx.afterPlugin,
      );
    },
  },
  acl_file: {
    key: (ctx) => `acl_file:${fileSetting(ctx.config, ctx.listener, "acl_file")}`,
    make: (ctx) => {
      const { config, listener } = ctx;
      return new AclFileLink(() => fileSetting(config, listener, "acl_file"), ctx.log);
    },
  },
  jwt: {
    key: () => "jwt",
    make: (ctx) => new JwtLink(ctx.config, ctx.log),
  },
  http: {
    key: () => "http",
    make: (ctx) => new HttpLink(ctx.config, ctx.log),
  },
};
