/**
 * Dynamic security's control commands: the JSON API Mosquitto's plugin takes on
 * `$CONTROL/dynamic-security/v1` and that `mosquitto_ctrl dynsec` and the Management Center send.
 *
 * A request is `{"commands":[{"command":"createClient","username":"u",…},…]}`; the answer is
 * `{"responses":[{"command":"createClient"},…]}`, one response per command in order, with
 * `error` (Mosquitto's own texts) when it failed, `data` for get and list commands, and the
 * command's `correlationData` echoed. Command names are matched ignoring case, as Mosquitto does.
 *
 * Each command either changes nothing or makes its whole change, and a change is saved (the
 * caller's `save`) before the next command runs and before the answer goes out. When the save
 * fails, the change is undone and that command answers "Internal error: the configuration could
 * not be saved". `runCommands` also reports whose connections Mosquitto would close so that the
 * changes are enforced (its `kick` list).
 */
import { DEFAULT_ITERATIONS, hashPassword, parseHash, type PasswordHash } from "../password.ts";
import {
  type Acl,
  aclType,
  addMember,
  byName,
  type Client,
  clientJson,
  DEFAULT_ACCESS_TYPES,
  type DynsecData,
  field,
  type Group,
  groupJson,
  insertAcl,
  isObject,
  type Ref,
  removeMember,
  type Role,
  roleJson,
  sorted,
  sortRefs,
  validFilter,
} from "./model.ts";

/** Commands accepted in one request; the rest are answered with an error. */
export const MAX_COMMANDS = 1000;
/** Longest name, text or topic accepted in a command (an MQTT string's limit). */
const MAX_STRING = 65535;
/** Clients, groups or roles one file may hold; a create beyond this is refused. */
export const MAX_ENTRIES = 1_000_000;

/** One command's response. */
export type Response = Record<string, unknown>;

/** What a request did. */
export interface Outcome {
  responses: Response[];
  /** Something changed (and was saved). */
  changed: boolean;
  /** User names whose connections to close; null stands for every client without one. */
  kicks: Set<string | null>;
}

type Obj = Record<string, unknown>;

/** A command's own view: its arguments, its reply, and the request's outcome. */
class Cmd {
  response: Response | null = null;
  didChange = false;
  readonly kicks = new Set<string | null>();
  constructor(
    readonly name: string,
    readonly args: Obj,
    readonly correlation: string | undefined,
    readonly out: Outcome,
  ) {}

  /** Answer with success, or with `error`. */
  reply(error?: string): void {
    const r: Response = { command: this.name };
    if (error !== undefined) r.error = error;
    if (this.correlation !== undefined) r.correlationData = this.correlation;
    this.response = r;
  }

  /** Answer with `data`. */
  data(data: Obj): void {
    const r: Response = { command: this.name, data };
    if (this.correlation !== undefined) r.correlationData = this.correlation;
    this.response = r;
  }

  /**
   * A string argument: undefined when absent and optional; `false` (after replying `error`)
   * when absent and required, not a string, not valid UTF-8 or too long.
   */
  str(
    key: string,
    error: string,
    optional = false,
    utf8Error?: string,
  ): string | undefined | false {
    const v = field(this.args, key);
    if (v === undefined || (optional && v === null)) {
      if (optional) return undefined;
      this.reply(error);
      return false;
    }
    if (typeof v !== "string") {
      this.reply(error);
      return false;
    }
    if (!validUtf8(v) || v.length > MAX_STRING) {
      this.reply(utf8Error ?? error);
      return false;
    }
    return v;
  }

  /** An integer argument, `dflt` when absent or not a number (as Mosquitto's json_get_int). */
  int(key: string, dflt: number): number {
    const v = field(this.args, key);
    if (typeof v !== "number" || !Number.isFinite(v)) return dflt;
    return Math.trunc(Math.max(-2147483648, Math.min(2147483647, v)));
  }

  /** A boolean argument, `dflt` when absent or not a boolean. */
  bool(key: string, dflt: boolean): boolean {
    const v = field(this.args, key);
    return typeof v === "boolean" ? v : dflt;
  }

  changed(): void {
    this.didChange = true;
  }

  kick(username: string | null): void {
    this.kicks.add(username);
  }
}

/** No NUL and no lone surrogate: text Mosquitto's UTF-8 check accepts. */
function validUtf8(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) return false;
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

/** What `runCommands` needs of its caller. */
export interface CommandHooks {
  /** Writes `data` to the file (durably); rejects when it cannot. */
  save(): Promise<void>;
  /** `data` changed in memory (a command, or an undo): drop what was derived from it. */
  changed(): void;
  /** The data as last saved, to undo a change whose save failed. */
  saved(): DynsecData;
  /** A save failed (the change has been undone). */
  saveFailed?(e: unknown): void;
}

/** Runs every command of a request payload against `data` (changed in place). */
export async function runCommands(
  data: DynsecData,
  payload: Uint8Array,
  hooks: CommandHooks,
): Promise<Outcome> {
  const out: Outcome = { responses: [], changed: false, kicks: new Set() };
  let tree: unknown;
  try {
    tree = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    out.responses.push({ command: "Unknown command", error: "Payload not valid JSON" });
    return out;
  }
  const commands = isObject(tree) ? field(tree, "commands") : undefined;
  if (!Array.isArray(commands)) {
    out.responses.push({ command: "Unknown command", error: "Invalid/missing commands" });
    return out;
  }
  for (let i = 0; i < commands.length; i++) {
    const c = commands[i];
    if (i >= MAX_COMMANDS) {
      out.responses.push({
        command: "Unknown command",
        error: `Too many commands in one request (at most ${MAX_COMMANDS})`,
      });
      break;
    }
    if (!isObject(c)) {
      out.responses.push({ command: "Unknown command", error: "Command not an object" });
      continue;
    }
    const name = field(c, "command");
    const corr = field(c, "correlationData");
    if (typeof name !== "string") {
      const r: Response = { command: "Unknown command", error: "Missing command" };
      if (typeof corr === "string") r.correlationData = corr;
      out.responses.push(r);
      continue;
    }
    if (corr !== undefined && typeof corr !== "string") {
      // Mosquitto stops at a command whose correlationData is not a string.
      out.responses.push({ command: name, error: "Invalid correlationData data type." });
      break;
    }
    const handler = HANDLERS.get(name.toLowerCase());
    const cmd = new Cmd(handler ? handler[0] : name, c, corr, out);
    if (!handler) cmd.reply("Unknown command");
    else {
      await handler[1](cmd, data);
      if (cmd.didChange) await commit(cmd, data, hooks);
    }
    out.responses.push(cmd.response ?? { command: cmd.name, error: "Internal error" });
  }
  return out;
}

/** Saves a command's change, or undoes it (back to the saved data) when the save fails. */
async function commit(cmd: Cmd, data: DynsecData, hooks: CommandHooks) {
  hooks.changed();
  try {
    await hooks.save();
  } catch (e) {
    const old = hooks.saved();
    data.defaultACLAccess = old.defaultACLAccess;
    data.clients = old.clients;
    data.groups = old.groups;
    data.roles = old.roles;
    data.anonymousGroup = old.anonymousGroup;
    hooks.changed();
    hooks.saveFailed?.(e);
    cmd.reply("Internal error: the configuration could not be saved");
    return;
  }
  cmd.out.changed = true;
  for (const k of cmd.kicks) cmd.out.kicks.add(k);
}

type Handler = (cmd: Cmd, d: DynsecData) => void | Promise<void>;

const HANDLERS = new Map<string, [string, Handler]>();
function on(name: string, h: Handler): void {
  HANDLERS.set(name.toLowerCase(), [name, h]);
}

// ---------------------------------------------------------------- helpers

async function hash(password: string): Promise<PasswordHash> {
  const text = await hashPassword(new TextEncoder().encode(password), {
    iterations: DEFAULT_ITERATIONS,
  });
  return parseHash(text);
}

function username(cmd: Cmd): string | false {
  const u = cmd.str("username", "Invalid/missing username", false, "Username not valid UTF-8");
  return u === undefined ? false : u;
}

function groupname(cmd: Cmd): string | false {
  const g = cmd.str("groupname", "Invalid/missing groupname", false, "Group name not valid UTF-8");
  return g === undefined ? false : g;
}

function rolename(cmd: Cmd): string | false {
  const r = cmd.str("rolename", "Invalid/missing rolename", false, "Role name not valid UTF-8");
  return r === undefined ? false : r;
}

/** Text name and description arguments: absent, or strings. False after a reply. */
function texts(cmd: Cmd, optional: boolean) {
  const textname = cmd.str("textname", "Invalid/missing textname", optional);
  if (textname === false) return false;
  const textdescription = cmd.str("textdescription", "Invalid/missing textdescription", optional);
  if (textdescription === false) return false;
  return { textname, textdescription };
}

/**
 * The text name and description a modify command sets, when they are strings (others are
 * ignored, as by Mosquitto); false after a reply when one is not valid UTF-8 or too long.
 */
function modifyTexts(cmd: Cmd): { tn?: string; td?: string } | false {
  const out: { tn?: string; td?: string } = {};
  for (const [key, k] of [["textname", "tn"], ["textdescription", "td"]] as const) {
    const v = field(cmd.args, key);
    if (typeof v !== "string") continue;
    if (!validUtf8(v) || v.length > MAX_STRING) {
      cmd.reply(`Invalid/missing ${key}`);
      return false;
    }
    out[k] = v;
  }
  return out;
}

/** A `roles` argument: null when absent, false after a reply, else the references. */
function roleList(cmd: Cmd, d: DynsecData): Ref[] | null | false {
  const v = field(cmd.args, "roles");
  if (v === undefined) return null;
  if (!Array.isArray(v)) {
    cmd.reply("'roles' not an array or missing/invalid rolename");
    return false;
  }
  const refs: Ref[] = [];
  for (const r of v) {
    const name = isObject(r) ? field(r, "rolename") : undefined;
    if (typeof name !== "string") {
      cmd.reply("'roles' not an array or missing/invalid rolename");
      return false;
    }
    if (!d.roles.has(name)) {
      cmd.reply("Role not found");
      return false;
    }
    if (refs.some((x) => x.name === name)) continue;
    const p = field(r as Obj, "priority");
    refs.push({ name, priority: typeof p === "number" ? Math.trunc(p) : -1 });
  }
  sortRefs(refs);
  return refs;
}

/** An `acls` argument: null when absent (or not an array), false after a reply. */
function aclList(cmd: Cmd): Acl[] | null | false {
  const v = field(cmd.args, "acls");
  if (!Array.isArray(v)) return null;
  const acls: Acl[] = [];
  for (const a of v) {
    if (!isObject(a)) continue;
    const t = field(a, "acltype");
    const topic = field(a, "topic");
    const acltype = typeof t === "string" ? aclType(t) : undefined;
    if (acltype === undefined || typeof topic !== "string") continue;
    if (!validUtf8(topic) || !validFilter(topic)) {
      cmd.reply("Invalid ACL topic");
      return false;
    }
    if (acls.some((x) => x.acltype === acltype && x.topic === topic)) continue;
    const p = field(a, "priority");
    const allow = field(a, "allow");
    insertAcl(acls, {
      acltype,
      topic,
      priority: typeof p === "number" ? Math.trunc(p) : 0,
      allow: allow === true,
    });
  }
  return acls;
}

function page<T>(cmd: Cmd, items: T[]): T[] {
  const count = cmd.int("count", -1);
  const offset = Math.max(0, cmd.int("offset", 0));
  return count < 0 ? items.slice(offset) : items.slice(offset, offset + count);
}

function kickGroup(cmd: Cmd, d: DynsecData, g: Group): void {
  if (d.anonymousGroup === g.groupname) cmd.kick(null);
  for (const u of g.clients.keys()) cmd.kick(u);
}

function kickRole(cmd: Cmd, d: DynsecData, rolename: string): void {
  for (const c of d.clients.values()) {
    if (c.roles.some((r) => r.name === rolename)) cmd.kick(c.username);
  }
  for (const g of d.groups.values()) {
    if (g.roles.some((r) => r.name === rolename)) kickGroup(cmd, d, g);
  }
}

function setTexts(
  target: { textname?: string; textdescription?: string },
  t: { textname?: string; textdescription?: string },
) {
  if (t.textname !== undefined) target.textname = t.textname;
  if (t.textdescription !== undefined) target.textdescription = t.textdescription;
}

// ---------------------------------------------------------------- default access

on("setDefaultACLAccess", (cmd, d) => {
  const acls = field(cmd.args, "acls");
  if (!Array.isArray(acls)) return cmd.reply("Missing/invalid actions array");
  for (const a of acls) {
    if (!isObject(a)) continue;
    const t = field(a, "acltype");
    // mosquitto_ctrl 2.0.11 and older send "access": "allow" | "deny" instead of "allow": bool.
    const access = field(a, "access");
    const allow = field(a, "allow") ??
      (access === "allow" ? true : access === "deny" ? false : null);
    if (typeof t !== "string" || typeof allow !== "boolean") continue;
    const type = DEFAULT_ACCESS_TYPES.find((x) => x.toLowerCase() === t.toLowerCase());
    if (type) d.defaultACLAccess[type] = allow;
  }
  cmd.changed();
  cmd.reply();
});

on("getDefaultACLAccess", (cmd, d) => {
  cmd.data({
    acls: DEFAULT_ACCESS_TYPES.map((acltype) => ({ acltype, allow: d.defaultACLAccess[acltype] })),
  });
});

// ---------------------------------------------------------------- clients

on("createClient", async (cmd, d) => {
  const u = username(cmd);
  if (u === false) return;
  if (u === "") return cmd.reply("Empty username");
  const password = cmd.str("password", "Invalid/missing password", true);
  if (password === false) return;
  const clientid = cmd.str(
    "clientid",
    "Invalid/missing client id",
    true,
    "Client ID not valid UTF-8",
  );
  if (clientid === false) return;
  const t = texts(cmd, true);
  if (t === false) return;
  if (d.clients.has(u)) return cmd.reply("Client already exists");
  const roles = roleList(cmd, d);
  if (roles === false) return;
  const groups: Ref[] = [];
  const gl = field(cmd.args, "groups");
  if (Array.isArray(gl)) {
    for (const g of gl) {
      const name = isObject(g) ? field(g, "groupname") : undefined;
      if (typeof name !== "string") continue;
      if (!d.groups.has(name)) return cmd.reply("Group not found");
      const p = field(g as Obj, "priority");
      groups.push({ name, priority: typeof p === "number" ? Math.trunc(p) : -1 });
    }
  }
  if (d.clients.size >= MAX_ENTRIES) return cmd.reply("Too many clients");
  const pw = password === undefined ? undefined : await hash(password);
  // The hash ran on the worker pool: the name may have been taken meanwhile.
  if (d.clients.has(u)) return cmd.reply("Client already exists");
  const client: Client = { username: u, disabled: false, roles: roles ?? [], groups: [] };
  if (clientid) client.clientid = clientid;
  setTexts(client, t);
  if (pw) client.password = pw;
  d.clients.set(u, client);
  for (const g of groups) {
    const group = d.groups.get(g.name);
    if (group) addMember(group, client, g.priority);
  }
  cmd.changed();
  cmd.reply();
});

on("deleteClient", (cmd, d) => {
  const u = username(cmd);
  if (u === false) return;
  const c = d.clients.get(u);
  if (!c) return cmd.reply("Client not found");
  for (const g of c.groups) {
    const group = d.groups.get(g.name);
    if (group) removeMember(group, c);
  }
  d.clients.delete(u);
  cmd.changed();
  cmd.kick(u);
  cmd.reply();
});

function withClient(cmd: Cmd, d: DynsecData): Client | undefined {
  const u = username(cmd);
  if (u === false) return undefined;
  const c = d.clients.get(u);
  if (!c) cmd.reply("Client not found");
  return c;
}

on("enableClient", (cmd, d) => {
  const c = withClient(cmd, d);
  if (!c) return;
  c.disabled = false;
  cmd.changed();
  cmd.reply();
});

on("disableClient", (cmd, d) => {
  const c = withClient(cmd, d);
  if (!c) return;
  c.disabled = true;
  cmd.changed();
  cmd.kick(c.username);
  cmd.reply();
});

on("setClientId", (cmd, d) => {
  const u = username(cmd);
  if (u === false) return;
  const id = cmd.str("clientid", "Invalid/missing client ID", true, "Client ID not valid UTF-8");
  if (id === false) return;
  const c = d.clients.get(u);
  if (!c) return cmd.reply("Client not found");
  if (id) c.clientid = id;
  else delete c.clientid;
  cmd.changed();
  cmd.kick(u);
  cmd.reply();
});

on("setClientPassword", async (cmd, d) => {
  const u = username(cmd);
  if (u === false) return;
  const password = cmd.str("password", "Invalid/missing password");
  if (password === false || password === undefined) return;
  if (password === "") return cmd.reply("Empty password is not allowed");
  if (!d.clients.has(u)) return cmd.reply("Client not found");
  const pw = await hash(password);
  const c = d.clients.get(u);
  if (!c) return cmd.reply("Client not found");
  c.password = pw;
  cmd.changed();
  cmd.kick(u);
  cmd.reply();
});

on("modifyClient", async (cmd, d) => {
  const u = username(cmd);
  if (u === false) return;
  if (!d.clients.has(u)) return cmd.reply("Client not found");
  const idv = field(cmd.args, "clientid");
  const clientid = typeof idv === "string" ? idv : undefined;
  if (clientid !== undefined && !validUtf8(clientid)) return cmd.reply("Client ID not valid UTF-8");
  const pv = field(cmd.args, "password");
  const password = typeof pv === "string" && pv !== "" ? pv : undefined;
  const tx = modifyTexts(cmd);
  if (tx === false) return;
  const { tn, td } = tx;
  const roles = roleList(cmd, d);
  if (roles === false) return;
  let groups: Ref[] | null = null;
  const gl = field(cmd.args, "groups");
  if (Array.isArray(gl)) {
    groups = [];
    for (const g of gl) {
      if (!isObject(g)) continue;
      const name = field(g, "groupname");
      if (typeof name !== "string") {
        return cmd.reply("'groups' contains an object with an invalid 'groupname'");
      }
      if (!d.groups.has(name)) {
        return cmd.reply("'groups' contains an object with a 'groupname' that does not exist");
      }
      const p = field(g, "priority");
      groups.push({ name, priority: typeof p === "number" ? Math.trunc(p) : -1 });
    }
  }
  const pw = password === undefined ? undefined : await hash(password);
  const c = d.clients.get(u);
  if (!c) return cmd.reply("Client not found");
  if (groups) {
    for (const g of [...c.groups]) {
      const group = d.groups.get(g.name);
      if (group) removeMember(group, c);
    }
    for (const g of groups) {
      const group = d.groups.get(g.name);
      if (group) addMember(group, c, g.priority);
    }
  }
  if (pw) c.password = pw;
  if (clientid !== undefined) {
    if (clientid) c.clientid = clientid;
    else delete c.clientid;
  }
  if (typeof tn === "string") c.textname = tn;
  if (typeof td === "string") c.textdescription = td;
  if (roles) c.roles = roles.filter((r) => d.roles.has(r.name));
  cmd.changed();
  cmd.kick(u);
  cmd.reply();
});

on("addClientRole", (cmd, d) => {
  const u = username(cmd);
  if (u === false) return;
  const r = rolename(cmd);
  if (r === false) return;
  const priority = cmd.int("priority", -1);
  const c = d.clients.get(u);
  if (!c) return cmd.reply("Client not found");
  if (!d.roles.has(r)) return cmd.reply("Role not found");
  if (c.roles.some((x) => x.name === r)) return cmd.reply("Client is already in this role");
  c.roles.push({ name: r, priority });
  sortRefs(c.roles);
  cmd.changed();
  cmd.kick(u);
  cmd.reply();
});

on("removeClientRole", (cmd, d) => {
  const u = username(cmd);
  if (u === false) return;
  const r = rolename(cmd);
  if (r === false) return;
  const c = d.clients.get(u);
  if (!c) return cmd.reply("Client not found");
  if (!d.roles.has(r)) return cmd.reply("Role not found");
  c.roles = c.roles.filter((x) => x.name !== r);
  cmd.changed();
  cmd.kick(u);
  cmd.reply();
});

on("getClient", (cmd, d) => {
  const c = withClient(cmd, d);
  if (c) cmd.data({ client: clientJson(c) });
});

on("listClients", (cmd, d) => {
  const verbose = cmd.bool("verbose", false);
  const all = sorted(d.clients);
  cmd.data({
    totalCount: all.length,
    clients: page(cmd, all).map((c) => verbose ? clientJson(c) : c.username),
  });
});

// ---------------------------------------------------------------- groups

on("createGroup", (cmd, d) => {
  const g = groupname(cmd);
  if (g === false) return;
  if (g === "") return cmd.reply("Empty groupname");
  const t = texts(cmd, true);
  if (t === false) return;
  if (d.groups.has(g)) return cmd.reply("Group already exists");
  const roles = roleList(cmd, d);
  if (roles === false) return;
  if (d.groups.size >= MAX_ENTRIES) return cmd.reply("Too many groups");
  const group: Group = { groupname: g, roles: roles ?? [], clients: new Map() };
  setTexts(group, t);
  d.groups.set(g, group);
  cmd.changed();
  cmd.reply();
});

function withGroup(cmd: Cmd, d: DynsecData): Group | undefined {
  const g = groupname(cmd);
  if (g === false) return undefined;
  const group = d.groups.get(g);
  if (!group) cmd.reply("Group not found");
  return group;
}

on("deleteGroup", (cmd, d) => {
  const g = withGroup(cmd, d);
  if (!g) return;
  if (d.anonymousGroup === g.groupname) {
    return cmd.reply("Deleting the anonymous group is forbidden");
  }
  kickGroup(cmd, d, g);
  for (const u of [...g.clients.keys()]) {
    const c = d.clients.get(u);
    if (c) removeMember(g, c);
  }
  d.groups.delete(g.groupname);
  cmd.changed();
  cmd.reply();
});

on("modifyGroup", (cmd, d) => {
  const g = withGroup(cmd, d);
  if (!g) return;
  const tx = modifyTexts(cmd);
  if (tx === false) return;
  const { tn, td } = tx;
  const roles = roleList(cmd, d);
  if (roles === false) return;
  let members: Ref[] | null = null;
  const cl = field(cmd.args, "clients");
  if (Array.isArray(cl)) {
    members = [];
    for (const c of cl) {
      if (!isObject(c)) continue;
      const name = field(c, "username");
      if (typeof name !== "string") {
        return cmd.reply("'clients' contains an object with an invalid 'username'");
      }
      if (!d.clients.has(name)) {
        return cmd.reply("'clients' contains an object with a 'username' that does not exist");
      }
      const p = field(c, "priority");
      members.push({ name, priority: typeof p === "number" ? Math.trunc(p) : -1 });
    }
  }
  if (members) {
    kickGroup(cmd, d, g);
    for (const u of [...g.clients.keys()]) {
      const c = d.clients.get(u);
      if (c) removeMember(g, c);
    }
    for (const m of members) addMember(g, d.clients.get(m.name)!, m.priority);
  }
  if (typeof tn === "string") g.textname = tn;
  if (typeof td === "string") g.textdescription = td;
  if (roles) g.roles = roles;
  cmd.changed();
  kickGroup(cmd, d, g);
  cmd.reply();
});

on("getGroup", (cmd, d) => {
  const g = withGroup(cmd, d);
  if (g) cmd.data({ group: groupJson(g) });
});

on("listGroups", (cmd, d) => {
  const verbose = cmd.bool("verbose", false);
  const all = sorted(d.groups);
  cmd.data({
    totalCount: all.length,
    groups: page(cmd, all).map((g) => verbose ? groupJson(g) : g.groupname),
  });
});

on("addGroupClient", (cmd, d) => {
  const u = username(cmd);
  if (u === false) return;
  const g = groupname(cmd);
  if (g === false) return;
  const priority = cmd.int("priority", -1);
  const c = d.clients.get(u);
  if (!c) return cmd.reply("Client not found");
  const group = d.groups.get(g);
  if (!group) return cmd.reply("Group not found");
  if (!addMember(group, c, priority)) return cmd.reply("Client is already in this group");
  cmd.changed();
  cmd.kick(u);
  cmd.reply();
});

on("removeGroupClient", (cmd, d) => {
  const u = username(cmd);
  if (u === false) return;
  const g = groupname(cmd);
  if (g === false) return;
  const c = d.clients.get(u);
  if (!c) return cmd.reply("Client not found");
  const group = d.groups.get(g);
  if (!group) return cmd.reply("Group not found");
  removeMember(group, c);
  cmd.changed();
  cmd.kick(u);
  cmd.reply();
});

on("addGroupRole", (cmd, d) => {
  const g = groupname(cmd);
  if (g === false) return;
  const r = rolename(cmd);
  if (r === false) return;
  const priority = cmd.int("priority", -1);
  const group = d.groups.get(g);
  if (!group) return cmd.reply("Group not found");
  if (!d.roles.has(r)) return cmd.reply("Role not found");
  if (group.roles.some((x) => x.name === r)) return cmd.reply("Group is already in this role");
  group.roles.push({ name: r, priority });
  sortRefs(group.roles);
  cmd.changed();
  kickGroup(cmd, d, group);
  cmd.reply();
});

on("removeGroupRole", (cmd, d) => {
  const g = groupname(cmd);
  if (g === false) return;
  const r = rolename(cmd);
  if (r === false) return;
  const group = d.groups.get(g);
  if (!group) return cmd.reply("Group not found");
  if (!d.roles.has(r)) return cmd.reply("Role not found");
  group.roles = group.roles.filter((x) => x.name !== r);
  cmd.changed();
  kickGroup(cmd, d, group);
  cmd.reply();
});

on("setAnonymousGroup", (cmd, d) => {
  const g = withGroup(cmd, d);
  if (!g) return;
  d.anonymousGroup = g.groupname;
  cmd.changed();
  cmd.kick(null);
  cmd.reply();
});

on("getAnonymousGroup", (cmd, d) => {
  cmd.data({ group: { groupname: d.anonymousGroup ?? "" } });
});

// ---------------------------------------------------------------- roles

on("createRole", (cmd, d) => {
  const r = rolename(cmd);
  if (r === false) return;
  if (r === "") return cmd.reply("Empty rolename");
  const t = texts(cmd, true);
  if (t === false) return;
  const w = field(cmd.args, "allowwildcardsubs");
  if (w !== undefined && typeof w !== "boolean") return cmd.reply("Invalid allowwildcardsubs");
  if (d.roles.has(r)) return cmd.reply("Role already exists");
  const acls = aclList(cmd);
  if (acls === false) return;
  if (d.roles.size >= MAX_ENTRIES) return cmd.reply("Too many roles");
  const role: Role = { rolename: r, allowwildcardsubs: w !== false, acls: acls ?? [] };
  setTexts(role, t);
  d.roles.set(r, role);
  cmd.changed();
  cmd.reply();
});

function withRole(cmd: Cmd, d: DynsecData, missing = "Role not found"): Role | undefined {
  const r = rolename(cmd);
  if (r === false) return undefined;
  const role = d.roles.get(r);
  if (!role) cmd.reply(missing);
  return role;
}

on("deleteRole", (cmd, d) => {
  const role = withRole(cmd, d);
  if (!role) return;
  kickRole(cmd, d, role.rolename);
  for (const c of d.clients.values()) c.roles = c.roles.filter((x) => x.name !== role.rolename);
  for (const g of d.groups.values()) g.roles = g.roles.filter((x) => x.name !== role.rolename);
  d.roles.delete(role.rolename);
  cmd.changed();
  cmd.reply();
});

on("modifyRole", (cmd, d) => {
  const role = withRole(cmd, d, "Role does not exist");
  if (!role) return;
  const tx = modifyTexts(cmd);
  if (tx === false) return;
  const { tn, td } = tx;
  const w = field(cmd.args, "allowwildcardsubs");
  const acls = aclList(cmd);
  if (acls === false) return;
  if (typeof tn === "string") role.textname = tn;
  if (typeof td === "string") role.textdescription = td;
  if (typeof w === "boolean") role.allowwildcardsubs = w;
  if (acls) role.acls = acls;
  cmd.changed();
  kickRole(cmd, d, role.rolename);
  cmd.reply();
});

on("getRole", (cmd, d) => {
  const role = withRole(cmd, d);
  if (role) cmd.data({ role: roleJson(role) });
});

on("listRoles", (cmd, d) => {
  const verbose = cmd.bool("verbose", false);
  const all = sorted(d.roles);
  cmd.data({
    totalCount: all.length,
    roles: page(cmd, all).map((r) => verbose ? roleJson(r) : r.rolename),
  });
});

/** The role, ACL type and topic of addRoleACL / removeRoleACL; undefined after a reply. */
function aclArgs(cmd: Cmd, d: DynsecData) {
  const role = withRole(cmd, d);
  if (!role) return undefined;
  const t = field(cmd.args, "acltype");
  if (typeof t !== "string") return void cmd.reply("Invalid/missing acltype");
  const acltype = aclType(t);
  if (!acltype) return void cmd.reply("Unknown acltype");
  const topic = field(cmd.args, "topic");
  if (typeof topic !== "string") return void cmd.reply("Invalid/missing topic");
  if (!validUtf8(topic)) return void cmd.reply("Topic not valid UTF-8");
  if (!validFilter(topic)) return void cmd.reply("Invalid ACL topic");
  return { role, acltype, topic };
}

on("addRoleACL", (cmd, d) => {
  const a = aclArgs(cmd, d);
  if (!a) return;
  const { role, acltype, topic } = a;
  if (role.acls.some((x) => x.acltype === acltype && x.topic === topic)) {
    return cmd.reply("ACL with this topic already exists");
  }
  insertAcl(role.acls, {
    acltype,
    topic,
    priority: cmd.int("priority", 0),
    allow: cmd.bool("allow", false),
  });
  cmd.changed();
  cmd.reply();
  kickRole(cmd, d, role.rolename);
});

on("removeRoleACL", (cmd, d) => {
  const a = aclArgs(cmd, d);
  if (!a) return;
  const { role, acltype, topic } = a;
  const i = role.acls.findIndex((x) => x.acltype === acltype && x.topic === topic);
  if (i < 0) return cmd.reply("ACL not found");
  role.acls.splice(i, 1);
  cmd.changed();
  cmd.reply();
  kickRole(cmd, d, role.rolename);
});

/** Every command name this API takes, as Mosquitto spells them. */
export const COMMANDS: readonly string[] = [...HANDLERS.values()].map(([n]) => n).sort(byName);
