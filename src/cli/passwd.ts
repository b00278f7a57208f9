/**
 * `midge passwd`: create and edit password files, with mosquitto_passwd's options and file
 * format (see src/auth/password.ts). Files it writes are read by Mosquitto 2.0 and 2.1.
 */
import process from "node:process";
import { randomBytes } from "node:crypto";
import { chmod, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { DEFAULT_ITERATIONS, type HashOptions, hashPassword, MAX_FIELD } from "../auth/password.ts";

export const PASSWD_USAGE = `Usage: midge passwd [-H HASH] [-I ITERATIONS] [-c | -D] FILE USER
       midge passwd [-H HASH] [-I ITERATIONS] [-c] -b FILE USER PASSWORD
       midge passwd -U FILE

Add a user to a password file or change its password (Mosquitto's password_file format, as
written by mosquitto_passwd). Without -b the password is asked for twice on the terminal,
without echo; when standard input is not a terminal, its first two lines are read instead.

Options:
  -b             Batch mode: take the password from the command line (it is then visible to
                 other users of this machine in the process list and in the shell history)
  -c             Create FILE with USER as its only user. An existing FILE that holds other
                 users is not replaced by mistake: on a terminal you are asked to confirm,
                 otherwise midge refuses (delete the file first, or leave out -c to add USER)
  -D             Delete USER from FILE
  -U             Hash every plain-text "user:password" line of FILE in place (lines already
                 hashed are kept as they are)
  -H HASH        sha512-pbkdf2 (default; $7$, read by Mosquitto 2.0 and 2.1), sha512 ($6$,
                 Mosquitto 1.x) or argon2id (Mosquitto 2.1 built with argon2 only)
  -I ITERATIONS  PBKDF2 iterations (default ${DEFAULT_ITERATIONS}; Mosquitto 2.0 writes 101) or
                 argon2id passes (default 1)
  -h, --help     Show this help

$7$ hashes use a 12-byte salt: Mosquitto 2.0 reads no other size. Files are written to a
temporary file next to FILE and renamed over it; a new FILE is readable by its owner only.
Exit status: 0 on success, 1 on error, 2 when the two passwords typed differ.
`;

/** Exit code and message of a refusal. */
class Fail extends Error {
  constructor(message: string, readonly code = 1) {
    super(message);
  }
}

interface Options {
  create: boolean;
  batch: boolean;
  remove: boolean;
  update: boolean;
  hash: HashOptions;
}

/** Runs `midge passwd` with its arguments; returns the exit code. */
export async function runPasswd(args: string[]): Promise<number> {
  try {
    await passwd(args);
    return 0;
  } catch (e) {
    if (e instanceof Fail) {
      if (e.message) process.stderr.write(`${e.message}\n`);
      return e.code;
    }
    process.stderr.write(`Error: ${(e as Error)?.message ?? e}\n`);
    return 1;
  }
}

/** Options come first, as with mosquitto_passwd: the first other word starts FILE USER [PASSWORD]. */
function parse(args: string[]): { o: Options; rest: string[] } | null {
  const o: Options = { create: false, batch: false, remove: false, update: false, hash: {} };
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      i++;
      break;
    }
    if (a === "-h" || a === "--help") return null;
    if (a === "-b") o.batch = true;
    else if (a === "-c") o.create = true;
    else if (a === "-D") o.remove = true;
    else if (a === "-U") o.update = true;
    else if (a === "-H" || a === "-I") {
      const v = args[++i];
      if (v === undefined) {
        throw new Fail(`Error: ${a} argument given but not enough other arguments.`);
      }
      if (a === "-H") {
        const kinds: Record<string, HashOptions["kind"]> = {
          "sha512-pbkdf2": "pbkdf2",
          sha512: "sha512",
          argon2id: "argon2id",
        };
        if (!Object.hasOwn(kinds, v)) throw new Fail(`Error: Unknown hash type '${v}'.`);
        o.hash.kind = kinds[v];
      } else {
        if (!/^[0-9]{1,8}$/.test(v) || Number(v) < 1) {
          throw new Fail("Error: Number of iterations must be 1-99999999.");
        }
        o.hash.iterations = Number(v);
      }
    } else if (a.startsWith("-") && a.length > 1) {
      throw new Fail(`Error: Unknown option '${a}'.\n\n${PASSWD_USAGE}`);
    } else break;
  }
  return { o, rest: args.slice(i) };
}

async function passwd(args: string[]): Promise<void> {
  const parsed = parse(args);
  if (!parsed) {
    process.stdout.write(PASSWD_USAGE);
    return;
  }
  const { o, rest } = parsed;
  const clash = (x: boolean, y: boolean, a: string, b: string) => {
    if (x && y) throw new Fail(`Error: ${a} and ${b} cannot be used together.`);
  };
  clash(o.create, o.remove, "-c", "-D");
  clash(o.create, o.update, "-c", "-U");
  clash(o.remove, o.update, "-D", "-U");
  clash(o.remove, o.batch, "-b", "-D");
  clash(o.update, o.batch, "-b", "-U");
  const want = o.update ? 1 : o.batch ? 3 : 2;
  if (rest.length !== want) throw new Fail(`Error: wrong number of arguments.\n\n${PASSWD_USAGE}`);
  const [file, user, given] = rest;

  if (o.update) return await updateFile(file, o.hash);
  checkUser(user);
  if (o.remove) return await removeUser(file, user);

  let lines: string[] | null = await readLines(file);
  if (o.create) {
    if (lines !== null) await confirmReplace(file, lines, user);
    lines = null;
  } else if (lines === null) {
    throw new Fail(`Error: Unable to open password file ${file} (use -c to create it).`);
  }
  const password = given ?? await askPassword();
  checkPassword(password);
  const line = `${user}:${await hashPassword(new TextEncoder().encode(password), o.hash)}`;
  const out = lines ?? [];
  const at = out.findIndex((l) => userOf(l) === user);
  if (at >= 0) out[at] = line;
  else out.push(line);
  await writeLines(file, out, lines !== null);
}

/** User names: no ':' (the separator), no control characters, at most 65535 characters. */
function checkUser(user: string): void {
  if (user === "") throw new Fail("Error: Username must not be empty.");
  if (user.length > MAX_FIELD) {
    throw new Fail("Error: Username must be less than 65536 characters long.");
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(user)) {
    throw new Fail("Error: Username must not contain control characters.");
  }
  if (user.includes(":")) throw new Fail("Error: Username must not contain the ':' character.");
  if (user !== user.trim()) {
    throw new Fail("Error: Username must not start or end with white space.");
  }
}

function checkPassword(password: string): void {
  if (password === "") throw new Fail("Error: Empty password.");
  if (password.length > MAX_FIELD) {
    throw new Fail("Error: Password must be less than 65536 characters long.");
  }
}

/** The user name of a password-file line, or undefined for comments and other lines. */
function userOf(line: string): string | undefined {
  if (line.startsWith("#")) return undefined;
  const colon = line.indexOf(":");
  return colon < 0 ? undefined : line.slice(0, colon).trim();
}

/** The file's lines (without the final empty one), or null when it does not exist. */
async function readLines(file: string): Promise<string[] | null> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return null;
    throw new Fail(`Error: Unable to open password file ${file}: ${(e as Error).message}.`);
  }
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.map((l) => l.endsWith("\r") ? l.slice(0, -1) : l);
}

/** Writes through a temporary file in the same directory, renamed over `file`. */
async function writeLines(file: string, lines: string[], existed: boolean): Promise<void> {
  let mode = 0o600;
  if (existed) {
    try {
      mode = (await stat(file)).mode & 0o7777;
    } catch { /* keep 0600 */ }
  }
  const tmp = `${file}.tmp-${randomBytes(6).toString("hex")}`;
  try {
    await writeFile(tmp, lines.length ? lines.join("\n") + "\n" : "", { mode: 0o600, flag: "wx" });
    await chmod(tmp, mode);
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw new Fail(`Error: Unable to write password file ${file}: ${(e as Error).message}.`);
  }
}

/** -c on a file that holds other users: confirm on a terminal, refuse otherwise. */
async function confirmReplace(file: string, lines: string[], user: string): Promise<void> {
  const others = lines.map(userOf).filter((u) => u !== undefined && u !== user);
  if (others.length === 0) return;
  const what = `${file} already holds ${others.length} other user${others.length > 1 ? "s" : ""}`;
  if (!process.stdin.isTTY) {
    throw new Fail(
      `Error: ${what}; -c would erase them. Leave out -c to add or update ${user}, or delete the file first.`,
    );
  }
  const answer =
    (await readTtyLine(`${what}. Replace it with a file holding only ${user}? [y/N] `, false))
      .trim().toLowerCase();
  if (answer !== "y" && answer !== "yes") throw new Fail("Nothing changed.");
}

async function removeUser(file: string, user: string): Promise<void> {
  const lines = await readLines(file);
  if (lines === null) throw new Fail(`Error: Unable to open password file ${file}.`);
  const kept = lines.filter((l) => userOf(l) !== user);
  if (kept.length === lines.length) {
    throw new Fail(`Warning: User ${user} not found in password file.`);
  }
  await writeLines(file, kept, true);
}

/** -U: hash the plain-text passwords of a file in place. */
async function updateFile(file: string, hash: HashOptions): Promise<void> {
  const lines = await readLines(file);
  if (lines === null) throw new Fail(`Error: Unable to open password file ${file}.`);
  const enc = new TextEncoder();
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const user = userOf(line);
    if (user === undefined) {
      if (line.trim() !== "" && !line.startsWith("#")) {
        throw new Fail(`Error: Corrupt password file at line ${i + 1}.`);
      }
      out.push(line);
      continue;
    }
    const rest = line.slice(line.indexOf(":") + 1);
    const end = rest.indexOf(":");
    const password = (end < 0 ? rest : rest.slice(0, end)).trim();
    if (user === "" || password === "") {
      throw new Fail(`Error: Corrupt password file at line ${i + 1}.`);
    }
    if (/^\$(6|7|argon2id)\$/.test(password)) {
      out.push(line); // already hashed
      continue;
    }
    out.push(`${user}:${await hashPassword(enc.encode(password), hash)}`);
  }
  await writeLines(file, out, true);
}

/** Asks for the password twice: on a terminal without echo, otherwise two lines of stdin. */
async function askPassword(): Promise<string> {
  if (process.stdin.isTTY) {
    const first = await readTtyLine("Password: ", true);
    if (first === "") throw new Fail("Error: Empty password.");
    const second = await readTtyLine("Reenter password: ", true);
    if (first !== second) throw new Fail("Error: Passwords do not match.", 2);
    return first;
  }
  const [first, second] = await readStdinLines(2);
  if (!first) throw new Fail("Error: Empty password.");
  if (first !== second) throw new Fail("Error: Passwords do not match.", 2);
  return first;
}

/**
 * Shows `prompt` and reads one line from the terminal in raw mode: nothing is echoed when
 * `hidden` (backspace edits, Ctrl-C aborts, Ctrl-D on an empty line ends). Raw mode is set
 * before the prompt appears, so nothing typed after it can be echoed by the terminal.
 */
function readTtyLine(prompt: string, hidden: boolean): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    let line = "";
    const finish = () => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
    };
    const onData = (chunk: Uint8Array | string) => {
      const text = typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
      for (const ch of text) {
        if (ch === "\r" || ch === "\n") {
          finish();
          resolve(line);
          return;
        }
        if (ch === "\u0003") {
          finish();
          reject(new Fail("Interrupted.", 130));
          return;
        }
        if (ch === "\u0004") {
          if (line === "") {
            finish();
            resolve("");
            return;
          }
        } else if (ch === "\u007f" || ch === "\b") {
          line = Array.from(line).slice(0, -1).join("");
          if (!hidden) process.stderr.write("\b \b");
        } else if (ch >= " ") {
          line += ch;
          if (!hidden) process.stderr.write(ch);
        }
      }
    };
    stdin.setRawMode(true);
    process.stderr.write(prompt);
    stdin.on("data", onData);
    stdin.resume();
  });
}

/** The first `n` lines of a non-terminal stdin (fewer if it ends first). */
function readStdinLines(n: number): Promise<string[]> {
  return new Promise((resolve) => {
    const lines: string[] = [];
    const rl = createInterface({ input: process.stdin, terminal: false });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      rl.close();
      process.stdin.pause();
      resolve(lines);
    };
    rl.on("line", (l) => {
      lines.push(l.endsWith("\r") ? l.slice(0, -1) : l);
      if (lines.length >= n) finish();
    });
    rl.on("close", finish);
  });
}
