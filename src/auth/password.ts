/**
 * Password hashes and password files in Mosquitto's format (`mosquitto_passwd`, mosquitto.conf
 * `password_file`): one `username:hash` per line, where the hash is
 *
 * - `$6$<salt>$<hash>`: SHA-512(password ‖ salt) (Mosquitto 1.x, VerneMQ's vmq_passwd);
 * - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512, 64-byte key (Mosquitto 2.0 writes a
 *   12-byte salt and 101 iterations, 2.1 a 64-byte salt; any salt of 12 or 64 bytes and any
 *   iteration count is read);
 * - `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>`: Argon2id in the PHC string
 *   format (Mosquitto 2.1 built with argon2), computed by the `hash-wasm` package.
 *
 * Salts and hashes of `$6$`/`$7$` are standard base64 with padding; the PHC string uses base64
 * without padding. Every comparison of digests is constant-time.
 */
import { Buffer } from "node:buffer";
import { createHash, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import { argon2id } from "hash-wasm";

/** A parsed password hash. */
export type PasswordHash =
  | { kind: "sha512"; salt: Uint8Array; hash: Uint8Array }
  | { kind: "pbkdf2"; iterations: number; salt: Uint8Array; hash: Uint8Array }
  | {
    kind: "argon2id";
    /** Memory in KiB, passes and lanes, as in the PHC string. */
    m: number;
    t: number;
    p: number;
    salt: Uint8Array;
    hash: Uint8Array;
  };

/** Length of the SHA-512 and PBKDF2-SHA512 digests Mosquitto stores. */
const DIGEST_BYTES = 64;
/** Salt length Mosquitto 2.0 writes and, for `$7$`, the only one it reads. */
export const SALT_BYTES = 12;
/** Iterations `midge passwd` writes by default (see src/cli/passwd.ts). */
export const DEFAULT_ITERATIONS = 1000;
/** Upper bounds that keep a hostile or mistyped hash from taking the broker's memory or time. */
const MAX_ITERATIONS = 10_000_000;
const MAX_ARGON2_KIB = 1024 * 1024;
const MAX_ARGON2_PASSES = 1000;
const MAX_ARGON2_LANES = 64;
/** Longest user name and hash text in a password file (Mosquitto's limit). */
export const MAX_FIELD = 65535;

const B64_PADDED = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const B64_BARE = /^[A-Za-z0-9+/]*$/;

function b64(text: string, padded: boolean, what: string): Uint8Array {
  const ok = padded ? B64_PADDED.test(text) : B64_BARE.test(text) && text.length % 4 !== 1;
  if (!ok || text.length === 0) throw new Error(`${what} is not valid base64`);
  return new Uint8Array(Buffer.from(text, "base64"));
}

function toB64(bytes: Uint8Array, padded = true): string {
  const s = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
  return padded ? s : s.replace(/=+$/, "");
}

/**
 * Parses the hash part of a password-file line. Throws an Error whose message says what is
 * wrong (never containing the hash itself).
 */
export function parseHash(text: string): PasswordHash {
  if (text.startsWith("$argon2id$")) return parseArgon2id(text);
  if (text.startsWith("$argon2")) {
    throw new Error("only the argon2id variant of Argon2 is supported");
  }
  const parts = text.split("$");
  if (parts[0] !== "" || parts.length < 2) {
    throw new Error(
      "the password is not hashed (plain-text password files are not read; hash them with `midge passwd -U FILE`)",
    );
  }
  if (parts[1] === "6") {
    if (parts.length !== 4) throw new Error("a $6$ hash has the form $6$<salt>$<hash>");
    const salt = b64(parts[2], true, "the salt");
    const hash = b64(parts[3], true, "the hash");
    if (salt.length !== SALT_BYTES && salt.length !== DIGEST_BYTES) {
      throw new Error(`the salt is ${salt.length} bytes (expected 12 or 64)`);
    }
    if (hash.length !== DIGEST_BYTES) throw new Error(`the hash is ${hash.length} bytes, not 64`);
    return { kind: "sha512", salt, hash };
  }
  if (parts[1] === "7") {
    if (parts.length !== 5) {
      throw new Error("a $7$ hash has the form $7$<iterations>$<salt>$<hash>");
    }
    if (!/^[1-9][0-9]{0,9}$/.test(parts[2]) || Number(parts[2]) > MAX_ITERATIONS) {
      throw new Error(`the iteration count must be 1-${MAX_ITERATIONS}`);
    }
    const salt = b64(parts[3], true, "the salt");
    const hash = b64(parts[4], true, "the hash");
    if (salt.length !== SALT_BYTES && salt.length !== DIGEST_BYTES) {
      throw new Error(`the salt is ${salt.length} bytes (expected 12 or 64)`);
    }
    if (hash.length !== DIGEST_BYTES) throw new Error(`the hash is ${hash.length} bytes, not 64`);
    return { kind: "pbkdf2", iterations: Number(parts[2]), salt, hash };
  }
  throw new Error(
    `unknown hash type "$${parts[1].slice(0, 16)}$" (expected $6$, $7$ or $argon2id$)`,
  );
}

function parseArgon2id(text: string): PasswordHash {
  // $argon2id$v=19$m=47104,t=1,p=1$<salt>$<hash>
  const parts = text.split("$");
  if (parts.length !== 6) {
    throw new Error(
      "an argon2id hash has the form $argon2id$v=19$m=<KiB>,t=<n>,p=<n>$<salt>$<hash>",
    );
  }
  if (parts[2] !== "v=19") throw new Error("only version 19 (v=19) of argon2id is supported");
  const params = /^m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,3})$/.exec(parts[3]);
  if (!params) throw new Error("argon2id parameters must read m=<KiB>,t=<passes>,p=<lanes>");
  const [m, t, p] = [Number(params[1]), Number(params[2]), Number(params[3])];
  if (p < 1 || p > MAX_ARGON2_LANES) {
    throw new Error(`argon2id lanes must be 1-${MAX_ARGON2_LANES}`);
  }
  if (t < 1 || t > MAX_ARGON2_PASSES) {
    throw new Error(`argon2id passes must be 1-${MAX_ARGON2_PASSES}`);
  }
  if (m < 8 * p || m > MAX_ARGON2_KIB) {
    throw new Error(`argon2id memory must be ${8 * p}-${MAX_ARGON2_KIB} KiB`);
  }
  const salt = b64(parts[4], false, "the salt");
  const hash = b64(parts[5], false, "the hash");
  if (salt.length < 8) throw new Error("the argon2id salt is shorter than 8 bytes");
  if (hash.length < 4 || hash.length > 1024) {
    throw new Error("the argon2id hash must be 4-1024 bytes");
  }
  return { kind: "argon2id", m, t, p, salt, hash };
}

/** Formats a hash for a password file (the inverse of `parseHash`). */
export function formatHash(h: PasswordHash): string {
  switch (h.kind) {
    case "sha512":
      return `$6$${toB64(h.salt)}$${toB64(h.hash)}`;
    case "pbkdf2":
      return `$7$${h.iterations}$${toB64(h.salt)}$${toB64(h.hash)}`;
    case "argon2id":
      return `$argon2id$v=19$m=${h.m},t=${h.t},p=${h.p}$${toB64(h.salt, false)}$${
        toB64(h.hash, false)
      }`;
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Whether verifying `h` is cheap enough to do on the event loop: one SHA-512, or PBKDF2 with
 * few iterations. Others run on a worker thread (PBKDF2) or in WebAssembly after a yield.
 */
export function cheapToVerify(h: PasswordHash): boolean {
  return h.kind === "sha512" || (h.kind === "pbkdf2" && h.iterations <= 200);
}

/** Checks `password` against `h` at once (blocking); argon2id is refused here (use `verifyPassword`). */
export function verifyPasswordSync(h: PasswordHash, password: Uint8Array): boolean {
  switch (h.kind) {
    case "sha512":
      return equal(createHash("sha512").update(password).update(h.salt).digest(), h.hash);
    case "pbkdf2":
      return equal(pbkdf2Sync(password, h.salt, h.iterations, DIGEST_BYTES, "sha512"), h.hash);
    case "argon2id":
      throw new Error("argon2id is verified asynchronously");
  }
}

/** Checks `password` against `h`. PBKDF2 runs on the runtime's worker pool, not the event loop. */
export function verifyPassword(h: PasswordHash, password: Uint8Array): Promise<boolean> {
  switch (h.kind) {
    case "sha512":
      return Promise.resolve(verifyPasswordSync(h, password));
    case "pbkdf2":
      return new Promise((resolve, reject) => {
        pbkdf2(password, h.salt, h.iterations, DIGEST_BYTES, "sha512", (err, key) => {
          if (err) reject(err);
          else resolve(equal(key, h.hash));
        });
      });
    case "argon2id":
      return argon2id({
        password,
        salt: h.salt,
        iterations: h.t,
        parallelism: h.p,
        memorySize: h.m,
        hashLength: h.hash.length,
        outputType: "binary",
      }).then((key) => equal(key, h.hash));
  }
}

/** How `hashPassword` hashes. */
export interface HashOptions {
  kind?: "pbkdf2" | "sha512" | "argon2id";
  /** PBKDF2 iterations (default DEFAULT_ITERATIONS) or argon2id passes (default 1). */
  iterations?: number;
  /** Salt length in bytes: 12 (default; the only size Mosquitto 2.0 reads for $7$) or 64. */
  saltBytes?: number;
}

/**
 * Hashes a new password with a fresh random salt. The default, `$7$` PBKDF2-SHA512 with a
 * 12-byte salt, is read by Mosquitto 2.0 and 2.1 alike. argon2id uses Mosquitto 2.1's parameters
 * (m=47104 KiB, t=1, p=1, 64-byte salt and hash).
 */
export async function hashPassword(password: Uint8Array, opts: HashOptions = {}): Promise<string> {
  const kind = opts.kind ?? "pbkdf2";
  if (kind === "argon2id") {
    const salt = new Uint8Array(randomBytes(opts.saltBytes ?? 64));
    const [m, t, p] = [47104, opts.iterations ?? 1, 1];
    const hash = await argon2id({
      password,
      salt,
      iterations: t,
      parallelism: p,
      memorySize: m,
      hashLength: DIGEST_BYTES,
      outputType: "binary",
    });
    return formatHash({ kind, m, t, p, salt, hash });
  }
  const salt = new Uint8Array(randomBytes(opts.saltBytes ?? SALT_BYTES));
  if (kind === "sha512") {
    const hash = new Uint8Array(createHash("sha512").update(password).update(salt).digest());
    return formatHash({ kind, salt, hash });
  }
  const iterations = opts.iterations ?? DEFAULT_ITERATIONS;
  const hash = await new Promise<Uint8Array>((resolve, reject) =>
    pbkdf2(password, salt, iterations, DIGEST_BYTES, "sha512", (err, key) => {
      if (err) reject(err);
      else resolve(new Uint8Array(key));
    })
  );
  return formatHash({ kind, iterations, salt, hash });
}

/** One problem in a file: its line (1-based) and what is wrong. */
export interface FileProblem {
  line: number;
  message: string;
}

/** A password file as read: user name → hash, and the problems found (file rejected if any). */
export interface PasswordFile {
  users: Map<string, PasswordHash>;
  problems: FileProblem[];
}

/**
 * Reads password-file text the way Mosquitto does: lines starting with `#` and lines without `:`
 * are skipped; the user name is the text before the first `:`, the hash the text up to the next
 * `:`; both are trimmed. Unlike Mosquitto, which drops a bad entry and goes on, every bad line
 * is reported (a file with problems is not used), and a user name given twice is a problem.
 */
export function parsePasswordFile(text: string): PasswordFile {
  const users = new Map<string, PasswordHash>();
  const problems: FileProblem[] = [];
  const firstLine = new Map<string, number>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i];
    const line = i + 1;
    if (raw.startsWith("#")) continue;
    const colon = raw.indexOf(":");
    if (colon < 0) continue;
    const user = raw.slice(0, colon).trim();
    const rest = raw.slice(colon + 1);
    const end = rest.indexOf(":");
    const hashText = (end < 0 ? rest : rest.slice(0, end)).trim();
    if (user === "") {
      problems.push({ line, message: "empty user name" });
      continue;
    }
    if (user.length > MAX_FIELD || hashText.length > MAX_FIELD) {
      problems.push({ line, message: "user name or hash longer than 65535 characters" });
      continue;
    }
    if (hashText === "") {
      problems.push({ line, message: `user "${user}" has no password hash` });
      continue;
    }
    const seen = firstLine.get(user);
    if (seen !== undefined) {
      problems.push({ line, message: `user "${user}" is already defined on line ${seen}` });
      continue;
    }
    try {
      users.set(user, parseHash(hashText));
      firstLine.set(user, line);
    } catch (e) {
      problems.push({ line, message: `user "${user}": ${(e as Error).message}` });
    }
  }
  return { users, problems };
}
