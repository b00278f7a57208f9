/**
 * JWTs made in the tests with node:crypto alone (not with the library the broker verifies
 * them with): HMAC, RSA PKCS#1 v1.5 and PSS, ECDSA and Ed25519 signatures, `alg: none`, and
 * tampering.
 */
import { Buffer } from "node:buffer";
import { constants, createHmac, generateKeyPairSync, type KeyObject, sign } from "node:crypto";

/** base64url of bytes or of a JSON value. */
export function b64url(v: Uint8Array | object | string): string {
  const bytes = v instanceof Uint8Array
    ? v
    : Buffer.from(typeof v === "string" ? v : JSON.stringify(v));
  return Buffer.from(bytes).toString("base64url");
}

/** Seconds since the epoch, plus `offset`. */
export function now(offset = 0): number {
  return Math.floor(Date.now() / 1000) + offset;
}

/** A key to sign with: an HMAC secret or a private key, with its JOSE algorithm. */
export type Signer = { alg: string; secret?: Uint8Array; key?: KeyObject; kid?: string };

/** Signs `payload` as a compact JWS. */
export function signJwt(s: Signer, payload: object, header: object = {}): string {
  const h = { alg: s.alg, typ: "JWT", ...(s.kid ? { kid: s.kid } : {}), ...header };
  const input = `${b64url(h)}.${b64url(payload)}`;
  const data = Buffer.from(input);
  const bits = s.alg.slice(2);
  const hash = `sha${bits}`;
  let sig: Uint8Array;
  if (s.alg.startsWith("HS")) sig = createHmac(hash, s.secret!).update(data).digest();
  else if (s.alg.startsWith("RS")) sig = sign(hash, data, s.key!);
  else if (s.alg.startsWith("PS")) {
    sig = sign(hash, data, {
      key: s.key!,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: Number(bits) / 8,
    });
  } else if (s.alg.startsWith("ES")) {
    sig = sign(hash, data, { key: s.key!, dsaEncoding: "ieee-p1363" });
  } else if (s.alg === "EdDSA") sig = sign(null, data, s.key!);
  else throw new Error(`cannot sign ${s.alg}`);
  return `${input}.${b64url(sig)}`;
}

/** An unsigned token (`alg: none`), which must never be accepted. */
export function unsignedJwt(payload: object): string {
  return `${b64url({ alg: "none", typ: "JWT" })}.${b64url(payload)}.`;
}

/** The token with one character of its payload changed (the signature no longer matches). */
export function tamper(token: string): string {
  const [h, p, s] = token.split(".");
  const claims = JSON.parse(Buffer.from(p, "base64url").toString());
  claims.sub = `${claims.sub ?? ""}x`;
  return `${h}.${b64url(claims)}.${s}`;
}

/** Key pairs of every kind a token can be signed with. */
export function keyPairs() {
  return {
    rsa: generateKeyPairSync("rsa", { modulusLength: 2048 }),
    ec: generateKeyPairSync("ec", { namedCurve: "P-256" }),
    ed: generateKeyPairSync("ed25519"),
  };
}

/** The public half as a JWK with `kid` and `alg` (for a JWKS). */
export function jwk(pub: KeyObject, kid: string, alg: string): object {
  return { ...pub.export({ format: "jwk" }), kid, alg, use: "sig" };
}

/** The public half as PEM (SPKI). */
export function pem(pub: KeyObject): string {
  return pub.export({ type: "spki", format: "pem" }) as string;
}
