/**
 * Dynamic security as a link of the auth chain: Mosquitto's dynamic-security plugin built in.
 * It answers logins (`Authenticator`), publish/subscribe/read checks (`Authorizer`), takes the
 * control commands on `$CONTROL/dynamic-security/v1` (`ControlHandler`) and keeps its file
 * (`ChainLink`: load, reload, close).
 *
 * Logins, as Mosquitto's plugin: no user name or no password, an unknown user, or a client
 * without a password: "next" (another link, or allow_anonymous, decides); a disabled client, a
 * client id other than the one the client is bound to, or a wrong password: "deny".
 *
 * Control requests run one at a time. Each change is saved (atomically, see store.ts) before
 * the next command runs and before the answer is returned; when a save fails, that change is
 * undone and its command answers with an error (see commands.ts). The connections of clients whose rights
 * changed are closed after the answer is out, through the `kick` callback the broker sets.
 */
import {
  type Access,
  ACCESS_WRITE,
  type AccessRequest,
  type Authenticator,
  type Authorizer,
  type ChainLink,
  type ControlHandler,
  type LoginAnswer,
  type LoginRequest,
  type Principal,
  type Verdict,
} from "../chain_types.ts";
import { cheapToVerify, verifyPassword, verifyPasswordSync } from "../password.ts";
import { DynsecAcl, type Who } from "./acl.ts";
import { runCommands } from "./commands.ts";
import { type DynsecData, emptyData, parseDynsec } from "./model.ts";
import { readDynsecFile, saveDynsecFile } from "./store.ts";

/** The control topic; responses go to `<topic>/response`. */
export const DYNSEC_TOPIC = "$CONTROL/dynamic-security/v1";

/** The log lines dynamic security writes. */
export interface DynsecLog {
  info(text: string): void;
  warning(text: string): void;
  error(text: string): void;
}

/** Control requests a handler holds (waiting or running); more are refused at once. */
export const MAX_PENDING = 64;

const NEXT: LoginAnswer = { verdict: "next" };

function encode(v: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v));
}
const ALLOW: LoginAnswer = { verdict: "allow" };

/** Mosquitto's dynamic-security plugin, built in. */
export class DynamicSecurity implements Authenticator, Authorizer, ChainLink, ControlHandler {
  readonly name = "dynsec";
  readonly topic = DYNSEC_TOPIC;
  /**
   * Closes the live connections of `username` (null: of every client without a user name), so
   * that a change is enforced; set by the broker at wiring time.
   */
  kick: ((username: string | null) => void) | null = null;
  /** Called after every change (a command or a reload), e.g. to drop cached answers. */
  onChange: (() => void) | null = null;
  #data: DynsecData = emptyData();
  /** The file's text as last read or saved: what a change whose save failed goes back to. */
  #saved = "";
  /** Control requests waiting or running. */
  #pending = 0;
  readonly #acl = new DynsecAcl(this.#data);
  /** Control requests, one at a time. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(readonly file: string, readonly log: DynsecLog) {}

  /** The data in force (read-only: change it through `control`). */
  get data(): Readonly<DynsecData> {
    return this.#data;
  }

  /** Reads the file. Throws `DynsecFileError` (file and reason) when it cannot be used. */
  async load(): Promise<void> {
    const { data, warnings, text } = await readDynsecFile(this.file);
    for (const w of warnings) this.log.warning(`Dynamic security ${this.file}: ${w}.`);
    this.#saved = text;
    this.#install(data);
  }

  /** Reads the file again (SIGHUP); a bad file is logged and the data in force stays. */
  async reload(): Promise<void> {
    await (this.#queue = this.#queue.then(() =>
      this.load().catch((e) => {
        this.log.error(`${(e as Error).message}`);
        this.log.error(`Dynamic security was not reloaded; the previous data stays in force.`);
      })
    ));
  }

  close(): void {
    this.kick = null;
  }

  #install(data: DynsecData): void {
    this.#data = data;
    this.#acl.data = data;
    this.log.info(
      `Dynamic security ${this.file}: ${data.clients.size} clients, ${data.groups.size} groups, ${data.roles.size} roles.`,
    );
    this.onChange?.();
  }

  authenticate(req: LoginRequest): LoginAnswer | Promise<LoginAnswer> {
    const { username, password } = req;
    if (username === undefined || password === undefined) return NEXT;
    const c = this.#data.clients.get(username);
    if (c === undefined) return NEXT;
    if (c.disabled) return { verdict: "deny", reason: `client "${username}" is disabled` };
    if (c.clientid !== undefined && c.clientid !== req.clientId) {
      return {
        verdict: "deny",
        reason: `client "${username}" must connect with client id "${c.clientid}"`,
      };
    }
    const h = c.password;
    if (h === undefined) return NEXT;
    const done = (ok: boolean): LoginAnswer =>
      ok ? ALLOW : { verdict: "deny", reason: `wrong password for client "${username}"` };
    if (cheapToVerify(h)) return done(verifyPasswordSync(h, password));
    return verifyPassword(h, password).then(done, (e) => {
      this.log.error(`Password check for client "${username}" failed: ${e}`);
      return { verdict: "deny", reason: "password check failed" };
    });
  }

  authorize(req: AccessRequest): Verdict {
    return this.#acl.check(req.principal, req.access, req.topic);
  }

  /** `authorize` without the request object: `who` needs only a client id and a user name. */
  check(who: Who, access: Access, topic: string): Verdict {
    return this.#acl.check(who, access, topic);
  }

  /**
   * Signing in to the web console as a dynamic-security admin: an enabled client with this
   * password whose roles let it send to the control topic (what `mosquitto_ctrl` needs).
   */
  async adminSignIn(username: string, password: string): Promise<boolean> {
    const clientId = this.#data.clients.get(username)?.clientid ?? "";
    const a = await this.authenticate({
      listener: undefined,
      address: "console",
      clientId,
      username,
      password: new TextEncoder().encode(password),
      protocolVersion: 5,
    });
    if (a.verdict !== "allow") return false;
    return this.check({ clientId, username }, ACCESS_WRITE, this.topic) === "allow";
  }

  /** One request in, one response payload out (see the module comment). */
  control(payload: Uint8Array, from: Principal): Promise<Uint8Array> {
    if (this.#pending >= MAX_PENDING) {
      return Promise.resolve(encode({
        responses: [{ command: "Unknown command", error: "Too many requests waiting; try again" }],
      }));
    }
    this.#pending++;
    const run = this.#queue.then(() => this.#control(payload, from)).finally(() => {
      this.#pending--;
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  async #control(payload: Uint8Array, from: Principal): Promise<Uint8Array> {
    const out = await runCommands(this.#data, payload, {
      save: async () => {
        this.#saved = await saveDynsecFile(this.file, this.#data);
      },
      saved: () => parseDynsec(this.#saved).data,
      changed: () => {
        this.#acl.changed();
        this.onChange?.();
      },
      saveFailed: (e) =>
        this.log.error(`Dynamic security: saving ${this.file} failed: ${e}; change undone.`),
    });
    const cmds = out.responses.map((r) => `${r.command}${r.error ? " (" + r.error + ")" : ""}`);
    this.log.info(
      `dynsec: ${from.clientId}/${from.username ?? ""} | ${cmds.join(", ").slice(0, 1000)}`,
    );
    if (out.kicks.size > 0 && this.kick) {
      const kick = this.kick;
      const who = [...out.kicks];
      // After the caller has published the response.
      setTimeout(() => {
        for (const u of who) {
          try {
            kick(u);
          } catch (e) {
            this.log.error(`Dynamic security: disconnecting ${u} failed: ${e}`);
          }
        }
      }, 0);
    }
    return encode({ responses: out.responses });
  }
}
