/**
 * The `jwt` link: OAuth 2.0 / OpenID Connect access tokens (signed JWTs) as credentials. The
 * signature is checked with `jose` against an HMAC secret, a PEM public key or certificate, or a
 * JWKS (file or https URL); then exp/nbf/iat with a clock skew, iss, aud and the configured
 * claims. The token's `acl` claim becomes the client's grants, and its `exp` the end of the
 * connection. `alg: none` never verifies: only the algorithms of the configured keys are taken.
 */
import { Buffer } from "node:buffer";
import {
  type CryptoKey,
  type FlattenedJWSInput,
  importSPKI,
  importX509,
  type JWSHeaderParameters,
  type JWTPayload,
  jwtVerify,
} from "jose";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../sys/log.ts";
import { ReasonCode } from "../codec/types.ts";
import type { Authenticator, ChainLink, LoginAnswer, LoginRequest } from "./chain_types.ts";
import { AuthFileError, readAuthFile as readKeyFile } from "./auth_file.ts";
import { jwksFromFile, type KeyResolver, RemoteJwks } from "./jwks.ts";
import { ClaimError, compileAclClaim } from "./jwt_acl.ts";
import { logFileError } from "./password_link.ts";

/** The v5 enhanced authentication method whose data is a token. */
export const JWT_METHOD = "OAUTH2-JWT";

const HMAC_ALGS = ["HS256", "HS384", "HS512"];
const PUBLIC_ALGS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
];
/** Three base64url parts: a compact JWS. Anything else is not a token (the next link decides). */
const COMPACT_JWS = /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*$/;
/** Longest token looked at (a CONNECT password can be 64 KB). */
const MAX_TOKEN = 16 * 1024;

/** Authenticates clients by a signed JWT. */
export class JwtLink implements Authenticator, ChainLink {
  readonly name = "jwt";
  readonly methods = [JWT_METHOD];
  readonly #config: Config;
  readonly #log: Logger;
  #secret: Uint8Array | null = null;
  #pem: string | null = null;
  /** Keys imported from the PEM, per algorithm (jose binds a CryptoKey to one). */
  #pemKeys = new Map<string, Promise<CryptoKey>>();
  #fileKeys: KeyResolver | null = null;
  #remote: RemoteJwks | null = null;
  /** `jwt_verify_claims`, split once. */
  readonly #claims: [string, string][];

  constructor(config: Config, log: Logger) {
    this.#config = config;
    this.#log = log;
    this.#claims = config.jwt_verify_claims.map((c) => {
      const i = c.indexOf("=");
      return [c.slice(0, i), c.slice(i + 1)];
    });
    const c = config;
    if (c.jwt_secret) {
      this.#secret = c.jwt_secret_base64
        ? new Uint8Array(Buffer.from(c.jwt_secret, "base64"))
        : new TextEncoder().encode(c.jwt_secret);
    }
    if (c.jwt_jwks_url) {
      this.#remote = new RemoteJwks(c.jwt_jwks_url, c.jwt_jwks_refresh, "", log);
    }
  }

  /** Reads the key files and fetches the JWKS URL. Throws `AuthFileError` on a bad file. */
  async load(): Promise<void> {
    const c = this.#config;
    if (c.jwt_cafile && this.#remote) {
      const ca = await readKeyFile(c.jwt_cafile);
      this.#remote.close();
      this.#remote = new RemoteJwks(c.jwt_jwks_url, c.jwt_jwks_refresh, ca, this.#log);
    }
    await this.#readFiles();
    await this.#remote?.start();
    if (!this.#secret && !this.#pem && !this.#fileKeys && !this.#remote) {
      this.#log.warning(
        'auth_chain has "jwt" but no key is set (jwt_secret, jwt_public_key_file, jwt_jwks_file or jwt_jwks_url): every token is refused.',
      );
    }
  }

  /** Reads the key files again (SIGHUP); a bad file keeps the old keys. */
  async reload(): Promise<boolean> {
    try {
      await this.#readFiles();
      return true;
    } catch (e) {
      logFileError(this.#log, e, "JWT key file");
      return false;
    }
  }

  async #readFiles(): Promise<void> {
    const c = this.#config;
    const pem = c.jwt_public_key_file ? await readKeyFile(c.jwt_public_key_file) : null;
    if (pem !== null && !pem.includes("-----BEGIN ")) {
      throw new AuthFileError(c.jwt_public_key_file, [{ line: 0, message: "not a PEM file" }]);
    }
    const fileKeys = c.jwt_jwks_file ? await jwksFromFile(c.jwt_jwks_file) : null;
    if (pem !== this.#pem) this.#pemKeys = new Map();
    this.#pem = pem;
    this.#fileKeys = fileKeys;
  }

  /** Stops the JWKS refresh. */
  close(): void {
    this.#remote?.close();
  }

  /** The algorithms the configured keys can verify. */
  #algorithms(): string[] {
    const out: string[] = [];
    if (this.#secret) out.push(...HMAC_ALGS);
    if (this.#pem || this.#fileKeys || this.#remote) out.push(...PUBLIC_ALGS);
    return out;
  }

  /** The key for a token's header: the secret (HS*), else the JWKS (by kid), else the PEM. */
  #key = async (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<
    CryptoKey | Uint8Array
  > => {
    const alg = header.alg ?? "";
    if (HMAC_ALGS.includes(alg)) {
      if (!this.#secret) throw new Error(`no secret for ${alg}`);
      return this.#secret;
    }
    const set = this.#fileKeys ?? this.#remote?.keys ?? null;
    if (set) return await set(header, token);
    if (this.#pem) {
      let k = this.#pemKeys.get(alg);
      if (!k) {
        const pem = this.#pem;
        k = pem.includes("BEGIN CERTIFICATE") ? importX509(pem, alg) : importSPKI(pem, alg);
        k.catch(() => this.#pemKeys.delete(alg));
        this.#pemKeys.set(alg, k);
      }
      return await k;
    }
    throw new Error("no key set");
  };

  authenticate(req: LoginRequest): LoginAnswer | Promise<LoginAnswer> {
    const fromAuthData = req.authMethod === JWT_METHOD;
    let token: string | undefined;
    if (fromAuthData && req.authData?.length) token = new TextDecoder().decode(req.authData);
    else if (this.#config.jwt_from === "username" && !fromAuthData) token = req.username;
    else if (req.password !== undefined && req.password.length <= MAX_TOKEN) {
      token = new TextDecoder().decode(req.password);
    }
    if (token === undefined || token.length > MAX_TOKEN || !COMPACT_JWS.test(token)) {
      // Not a token: someone else's credential (or none) — unless the client asked for this
      // method, in which case it is simply wrong.
      return fromAuthData
        ? { verdict: "deny", reason: "no token in the authentication data" }
        : { verdict: "next", reason: "no token" };
    }
    // A bad token is a bad password: v5 0x86 (0x87 for enhanced authentication).
    const code = fromAuthData ? ReasonCode.NotAuthorized : ReasonCode.BadUserNameOrPassword;
    return this.#verify(token, req).catch((e): LoginAnswer => ({
      verdict: "deny",
      // The error's message and code, never the token.
      reason: `token refused: ${(e as { code?: string }).code ?? "error"}: ${
        String((e as Error).message ?? e).slice(0, 200)
      }`,
      code,
    }));
  }

  async #verify(token: string, req: LoginRequest): Promise<LoginAnswer> {
    const c = this.#config;
    const algorithms = this.#algorithms();
    if (algorithms.length === 0) throw new Error("no key is configured");
    const { payload } = await jwtVerify(token, this.#key, {
      algorithms,
      clockTolerance: c.jwt_clock_skew,
      ...(c.jwt_issuer ? { issuer: c.jwt_issuer } : {}),
      ...(c.jwt_audience ? { audience: c.jwt_audience } : {}),
      ...(c.jwt_require_exp ? { requiredClaims: ["exp"] } : {}),
    });
    const now = Date.now() / 1000;
    if (typeof payload.iat === "number" && payload.iat > now + c.jwt_clock_skew) {
      throw Object.assign(new Error("issued in the future (iat)"), { code: "ERR_JWT_CLAIM" });
    }
    const who = { clientId: req.clientId, username: req.username };
    for (const [name, template] of this.#claims) {
      const want = fill(template, who);
      const got = (payload as Record<string, unknown>)[name];
      if (want === null || got === undefined || String(got) !== want) {
        throw Object.assign(new Error(`claim "${name}" does not match`), {
          code: "ERR_JWT_CLAIM",
        });
      }
    }
    const answer: { -readonly [K in keyof LoginAnswer]: LoginAnswer[K] } = { verdict: "allow" };
    if (typeof payload.exp === "number") answer.expiresAt = payload.exp * 1000;
    const acl = aclClaim(payload, c.jwt_acl_claim);
    if (acl !== undefined) {
      try {
        answer.grants = compileAclClaim(acl, who);
      } catch (e) {
        if (e instanceof ClaimError) {
          throw Object.assign(new Error(`acl claim: ${e.message}`), { code: "ERR_JWT_CLAIM" });
        }
        throw e;
      }
    }
    return answer;
  }
}

function aclClaim(payload: JWTPayload, name: string): unknown {
  return name ? (payload as Record<string, unknown>)[name] : undefined;
}

/** `template` with ${clientid} and ${username} filled in; null when a value is missing. */
function fill(
  template: string,
  who: { clientId: string; username: string | undefined },
): string | null {
  let missing = false;
  const out = template.replace(/\$\{(clientid|username)\}/g, (_, name: string) => {
    const v = name === "clientid" ? who.clientId : who.username;
    if (v === undefined) missing = true;
    return v ?? "";
  });
  return missing ? null : out;
}
