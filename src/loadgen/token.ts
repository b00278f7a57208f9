/**
 * Access tokens for load-generator clients (`midge bench --jwt-secret`): HS256 JWTs signed with
 * node:crypto, whose `acl` claim (EMQX's format) grants the client its own topic or filter, so
 * a broker with the `jwt` link checks every publish, subscribe and delivery against it.
 */
import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";

/** One rule of an `acl` claim. */
export interface AclRule {
  permission: "allow" | "deny";
  action: "publish" | "subscribe" | "all";
  topic: string;
}

/** An HS256 token for `clientId` (its `sub`), valid for `seconds`, with `acl` when given. */
export function benchToken(
  secret: string,
  clientId: string,
  acl: AclRule[] | undefined,
  seconds = 24 * 3600,
): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const claims: Record<string, unknown> = {
    sub: clientId,
    exp: Math.floor(Date.now() / 1000) + seconds,
  };
  if (acl) claims.acl = acl;
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const sig = createHmac("sha256", secret).update(input).digest("base64url");
  return `${input}.${sig}`;
}
