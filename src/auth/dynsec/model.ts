/**
 * Dynamic security's data (clients, groups, roles, default access, the anonymous group) and
 * Mosquitto's `dynamic-security.json` format, read and written.
 *
 * The file is Mosquitto's own: 2.0 passwords (`password`, `salt`, `iterations`: PBKDF2-SHA512,
 * base64) and 2.1 `encoded_password` (`$7$…` or `$argon2id$…`) are read; a password is written in
 * the 2.0 form whenever that form can hold it (PBKDF2 with a 12-byte salt), so Mosquitto 2.0 and
 * 2.1 both load a file written here. Keys are looked up as Mosquitto's cJSON does, ignoring case
 * (`mosquitto_ctrl dynsec init` writes `textName`).
 *
 * Orders are Mosquitto's: a client's or group's roles by priority (highest first) then name; a
 * client's groups likewise; a role's ACLs per type by priority, highest first, ties in the order
 * they were added; clients, groups and roles in lists and in the file by name.
 */
import { Buffer } from "node:buffer";
import { formatHash, parseHash, type PasswordHash } from "../password.ts";

/** The six ACL types a role can hold, in the order Mosquitto writes them. */
export const ACL_TYPES = [
  "publishClientSend",
  "publishClientReceive",
  "subscribeLiteral",
  "subscribePattern",
  "unsubscribeLiteral",
  "unsubscribePattern",
] as const;

/** One of ACL_TYPES. */
export type AclType = typeof ACL_TYPES[number];

/** The four kinds of default access (`defaultACLAccess`). */
export const DEFAULT_ACCESS_TYPES = [
  "publishClientSend",
  "publishClientReceive",
  "subscribe",
  "unsubscribe",
] as const;

/** One of DEFAULT_ACCESS_TYPES. */
export type DefaultAccessType = typeof DEFAULT_ACCESS_TYPES[number];

/** One ACL of a role. */
export interface Acl {
  acltype: AclType;
  topic: string;
  priority: number;
  allow: boolean;
}

/** A role (or group) named by a client or group, with its priority (-1 when none was given). */
export interface Ref {
  name: string;
  priority: number;
}

/** A role: named ACLs. */
export interface Role {
  rolename: string;
  textname?: string;
  textdescription?: string;
  /** Mosquitto 2.1: false refuses wildcard subscriptions to clients holding the role. */
  allowwildcardsubs: boolean;
  /** Sorted: by type (ACL_TYPES order), then priority, highest first; ties in insertion order. */
  acls: Acl[];
}

/** A client: a user name, its password and what it may do. */
export interface Client {
  username: string;
  /** When set, the client must connect with this client id. */
  clientid?: string;
  textname?: string;
  textdescription?: string;
  disabled: boolean;
  /** No password: the client cannot log in through dynamic security. */
  password?: PasswordHash;
  /** Sorted by priority (highest first), then name. */
  roles: Ref[];
  /** Sorted by priority (highest first), then name. */
  groups: Ref[];
}

/** A group of clients sharing roles. */
export interface Group {
  groupname: string;
  textname?: string;
  textdescription?: string;
  /** Sorted by priority (highest first), then name. */
  roles: Ref[];
  /** Member user name → the priority the group has for that client. */
  clients: Map<string, number>;
}

/** Everything a dynamic-security file holds. */
export interface DynsecData {
  defaultACLAccess: Record<DefaultAccessType, boolean>;
  clients: Map<string, Client>;
  groups: Map<string, Group>;
  roles: Map<string, Role>;
  /** The group whose roles apply to clients without a user name. */
  anonymousGroup?: string;
}

/** A dynamic-security file that cannot be used: names the file and what is wrong. */
export class DynsecFileError extends Error {
  constructor(readonly file: string, readonly reason: string) {
    super(`${file}: ${reason}`);
    this.name = "DynsecFileError";
  }
}

/** Mosquitto's defaults for a file without `defaultACLAccess`: everything denied. */
export function emptyData(): DynsecData {
  return {
    defaultACLAccess: {
      publishClientSend: false,
      publishClientReceive: false,
      subscribe: false,
      unsubscribe: false,
    },
    clients: new Map(),
    groups: new Map(),
    roles: new Map(),
  };
}

/** Compares names as Mosquitto's strcmp does for the text it holds (code units). */
export function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Sorts role or group references: priority (highest first), then name. */
export function sortRefs(refs: Ref[]): void {
  refs.sort((a, b) => b.priority - a.priority || byName(a.name, b.name));
}

/** Inserts `acl` in its place: after its type's ACLs of higher or equal priority. */
export function insertAcl(acls: Acl[], acl: Acl): void {
  const t = ACL_TYPES.indexOf(acl.acltype);
  let i = 0;
  while (i < acls.length) {
    const u = ACL_TYPES.indexOf(acls[i].acltype);
    if (u > t || (u === t && acls[i].priority < acl.priority)) break;
    i++;
  }
  acls.splice(i, 0, acl);
}

/** `acltype` as Mosquitto reads it (case-insensitive), or undefined when unknown. */
export function aclType(s: string): AclType | undefined {
  const l = s.toLowerCase();
  return ACL_TYPES.find((t) => t.toLowerCase() === l);
}

/** The value of `key` in `obj`, matched as cJSON does (exact first, then ignoring case). */
export function field(obj: Record<string, unknown>, key: string): unknown {
  if (Object.hasOwn(obj, key)) return obj[key];
  const l = key.toLowerCase();
  for (const k of Object.keys(obj)) if (k.toLowerCase() === l) return obj[k];
  return undefined;
}

/** Is `v` a JSON object (not an array, not null)? */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** What loading found that Mosquitto would silently skip: duplicates, dangling names. */
export interface LoadResult {
  data: DynsecData;
  warnings: string[];
}

/**
 * Reads the text of a dynamic-security file. Throws an Error whose message says what is wrong
 * and where (`clients[2] "bob": the salt is not valid base64`); the caller adds the file name.
 * An empty file is an empty configuration, as in Mosquitto.
 */
export function parseDynsec(text: string): LoadResult {
  const warnings: string[] = [];
  const data = emptyData();
  if (text.startsWith("\uFEFF")) text = text.slice(1);
  if (text.trim() === "") return { data, warnings };
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (e) {
    throw new Error(`not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(root)) throw new Error("the top level is not a JSON object");

  const access = field(root, "defaultACLAccess");
  if (access !== undefined) {
    if (!isObject(access)) throw new Error("defaultACLAccess is not an object");
    for (const t of DEFAULT_ACCESS_TYPES) {
      const v = field(access, t);
      if (v === undefined) continue;
      if (typeof v !== "boolean") throw new Error(`defaultACLAccess.${t} is not true or false`);
      data.defaultACLAccess[t] = v;
    }
  }

  // Roles first: clients and groups name them.
  for (const [i, r] of entries(root, "roles")) {
    const at = `roles[${i}]`;
    const rolename = name(r, "rolename", at);
    if (data.roles.has(rolename)) {
      warnings.push(`${at}: role "${rolename}" is defined twice; the first one is used`);
      continue;
    }
    const role: Role = {
      rolename,
      ...texts(r, at),
      allowwildcardsubs: optBool(r, "allowwildcardsubs", `${at} "${rolename}"`) ?? true,
      acls: [],
    };
    const acls = field(r, "acls");
    if (acls !== undefined) {
      if (!Array.isArray(acls)) throw new Error(`${at} "${rolename}": acls is not an array`);
      acls.forEach((a, j) => {
        const where = `${at} "${rolename}" acls[${j}]`;
        if (!isObject(a)) throw new Error(`${where} is not an object`);
        const acl = readAcl(a, where);
        if (role.acls.some((x) => x.acltype === acl.acltype && x.topic === acl.topic)) {
          warnings.push(`${where}: ${acl.acltype} ${acl.topic} is listed twice; first one used`);
          return;
        }
        insertAcl(role.acls, acl);
      });
    }
    data.roles.set(rolename, role);
  }

  for (const [i, c] of entries(root, "clients")) {
    const at = `clients[${i}]`;
    const username = name(c, "username", at);
    const where = `${at} "${username}"`;
    if (data.clients.has(username)) {
      warnings.push(`${at}: client "${username}" is defined twice; the first one is used`);
      continue;
    }
    const clientid = optString(c, "clientid", where);
    const client: Client = {
      username,
      ...texts(c, at),
      disabled: optBool(c, "disabled", where) ?? false,
      roles: readRefs(c, "roles", "rolename", where, data.roles, warnings),
      groups: [],
    };
    if (clientid !== undefined && clientid !== "") client.clientid = clientid;
    const pw = readPassword(c, where);
    if (pw) client.password = pw;
    data.clients.set(username, client);
  }

  for (const [i, g] of entries(root, "groups")) {
    const at = `groups[${i}]`;
    const groupname = name(g, "groupname", at);
    const where = `${at} "${groupname}"`;
    if (data.groups.has(groupname)) {
      warnings.push(`${at}: group "${groupname}" is defined twice; the first one is used`);
      continue;
    }
    const group: Group = {
      groupname,
      ...texts(g, at),
      roles: readRefs(g, "roles", "rolename", where, data.roles, warnings),
      clients: new Map(),
    };
    data.groups.set(groupname, group);
    const members = readRefs(g, "clients", "username", where, data.clients, warnings);
    for (const m of members) addMember(group, data.clients.get(m.name)!, m.priority);
  }

  const anon = field(root, "anonymousGroup");
  if (anon !== undefined) {
    if (typeof anon !== "string") throw new Error("anonymousGroup is not a string");
    if (data.groups.has(anon)) data.anonymousGroup = anon;
    else warnings.push(`anonymousGroup names "${anon}", which is not a group; ignored`);
  }
  return { data, warnings };
}

/** Adds `client` to `group` with `priority` (both sides); false when it was already a member. */
export function addMember(group: Group, client: Client, priority: number): boolean {
  if (group.clients.has(client.username)) return false;
  group.clients.set(client.username, priority);
  client.groups.push({ name: group.groupname, priority });
  sortRefs(client.groups);
  return true;
}

/** Removes `client` from `group` (both sides). */
export function removeMember(group: Group, client: Client): void {
  group.clients.delete(client.username);
  client.groups = client.groups.filter((g) => g.name !== group.groupname);
}

function* entries(root: Record<string, unknown>, key: string) {
  const v = field(root, key);
  if (v === undefined) return;
  if (!Array.isArray(v)) throw new Error(`${key} is not an array`);
  for (let i = 0; i < v.length; i++) {
    if (!isObject(v[i])) throw new Error(`${key}[${i}] is not an object`);
    yield [i, v[i] as Record<string, unknown>] as const;
  }
}

function name(obj: Record<string, unknown>, key: string, at: string): string {
  const v = field(obj, key);
  if (typeof v !== "string" || v === "") {
    throw new Error(`${at}: ${key} is missing or not a string`);
  }
  return v;
}

function optString(obj: Record<string, unknown>, key: string, at: string): string | undefined {
  const v = field(obj, key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new Error(`${at}: ${key} is not a string`);
  return v;
}

function optBool(obj: Record<string, unknown>, key: string, at: string): boolean | undefined {
  const v = field(obj, key);
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw new Error(`${at}: ${key} is not true or false`);
  return v;
}

function optInt(obj: Record<string, unknown>, key: string, at: string, dflt: number): number {
  const v = field(obj, key);
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new Error(`${at}: ${key} is not a number`);
  }
  return Math.trunc(Math.max(-2147483648, Math.min(2147483647, v)));
}

function texts(obj: Record<string, unknown>, at: string) {
  const out: { textname?: string; textdescription?: string } = {};
  const n = optString(obj, "textname", at);
  const d = optString(obj, "textdescription", at);
  if (n !== undefined) out.textname = n;
  if (d !== undefined) out.textdescription = d;
  return out;
}

function readAcl(a: Record<string, unknown>, where: string): Acl {
  const t = field(a, "acltype");
  const acltype = typeof t === "string" ? aclType(t) : undefined;
  if (acltype === undefined) {
    throw new Error(`${where}: acltype ${JSON.stringify(t)} is not one of ${ACL_TYPES.join(", ")}`);
  }
  const topic = field(a, "topic");
  if (typeof topic !== "string" || !validFilter(topic)) {
    throw new Error(`${where}: topic ${JSON.stringify(topic)} is not a valid topic filter`);
  }
  return {
    acltype,
    topic,
    priority: optInt(a, "priority", where, 0),
    allow: optBool(a, "allow", where) ?? false,
  };
}

function readRefs<T>(
  obj: Record<string, unknown>,
  key: string,
  nameKey: string,
  where: string,
  known: Map<string, T>,
  warnings: string[],
): Ref[] {
  const v = field(obj, key);
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new Error(`${where}: ${key} is not an array`);
  const refs: Ref[] = [];
  v.forEach((r, j) => {
    const at = `${where} ${key}[${j}]`;
    if (!isObject(r)) throw new Error(`${at} is not an object`);
    const n = name(r, nameKey, at);
    if (!known.has(n)) {
      warnings.push(`${at}: "${n}" does not exist; ignored`);
      return;
    }
    if (refs.some((x) => x.name === n)) {
      warnings.push(`${at}: "${n}" is listed twice; the first one is used`);
      return;
    }
    refs.push({ name: n, priority: optInt(r, "priority", at, -1) });
  });
  sortRefs(refs);
  return refs;
}

/** 2.1 `encoded_password`, else 2.0 `password` + `salt` + `iterations`, else none. */
function readPassword(c: Record<string, unknown>, where: string): PasswordHash | undefined {
  const encoded = optString(c, "encoded_password", where);
  if (encoded !== undefined) {
    try {
      return parseHash(encoded);
    } catch (e) {
      throw new Error(`${where}: encoded_password: ${(e as Error).message}`);
    }
  }
  const password = optString(c, "password", where);
  const salt = optString(c, "salt", where);
  const iterations = field(c, "iterations");
  if (password === undefined && salt === undefined) return undefined;
  if (password === undefined || salt === undefined || iterations === undefined) {
    throw new Error(`${where}: a password needs password, salt and iterations together`);
  }
  if (typeof iterations !== "number" || !Number.isInteger(iterations)) {
    throw new Error(`${where}: iterations is not an integer`);
  }
  try {
    return parseHash(`$7$${iterations}$${salt}$${password}`);
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
}

/** A valid topic filter for an ACL: non-empty, `#` only last and alone, `+` alone in a level. */
export function validFilter(f: string): boolean {
  if (f.length === 0 || f.length > 65535 || f.includes("\0")) return false;
  const levels = f.split("/");
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l.includes("#") && (l !== "#" || i !== levels.length - 1)) return false;
    if (l.includes("+") && l !== "+") return false;
  }
  return true;
}

function refsJson(refs: Ref[], key: string): Record<string, unknown>[] {
  return refs.map((r) =>
    r.priority === -1 ? { [key]: r.name } : { [key]: r.name, priority: r.priority }
  );
}

/** A role as Mosquitto writes it (in the file and in getRole / verbose listRoles). */
export function roleJson(r: Role): Record<string, unknown> {
  const out: Record<string, unknown> = { rolename: r.rolename };
  if (r.textname !== undefined) out.textname = r.textname;
  if (r.textdescription !== undefined) out.textdescription = r.textdescription;
  if (!r.allowwildcardsubs) out.allowwildcardsubs = false;
  out.acls = r.acls.map((a) => ({
    acltype: a.acltype,
    topic: a.topic,
    priority: a.priority,
    allow: a.allow,
  }));
  return out;
}

/** A client's public fields (no password), as in getClient and verbose listClients. */
export function clientJson(c: Client): Record<string, unknown> {
  const out: Record<string, unknown> = { username: c.username };
  if (c.clientid !== undefined) out.clientid = c.clientid;
  if (c.textname !== undefined) out.textname = c.textname;
  if (c.textdescription !== undefined) out.textdescription = c.textdescription;
  if (c.disabled) out.disabled = true;
  out.roles = refsJson(c.roles, "rolename");
  out.groups = refsJson(c.groups, "groupname");
  return out;
}

/** A group as in getGroup and verbose listGroups: members by name, without priorities. */
export function groupJson(g: Group): Record<string, unknown> {
  const out: Record<string, unknown> = { groupname: g.groupname };
  if (g.textname !== undefined) out.textname = g.textname;
  if (g.textdescription !== undefined) out.textdescription = g.textdescription;
  out.clients = [...g.clients.keys()].sort(byName).map((username) => ({ username }));
  out.roles = refsJson(g.roles, "rolename");
  return out;
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Items of a map sorted by key. */
export function sorted<T>(m: Map<string, T>): T[] {
  return [...m.keys()].sort(byName).map((k) => m.get(k)!);
}

/**
 * The file text, in Mosquitto's layout (tab-indented, keys in its order). A PBKDF2 password with
 * a 12-byte salt is written in the 2.0 form that 2.0 and 2.1 read; any other hash (argon2id, a
 * 64-byte salt) as 2.1's `encoded_password`, which only 2.1 reads.
 */
export function formatDynsec(d: DynsecData): string {
  const clients = sorted(d.clients).map((c) => {
    const out: Record<string, unknown> = { username: c.username };
    if (c.clientid !== undefined) out.clientid = c.clientid;
    if (c.textname !== undefined) out.textname = c.textname;
    if (c.textdescription !== undefined) out.textdescription = c.textdescription;
    if (c.disabled) out.disabled = true;
    out.roles = refsJson(c.roles, "rolename");
    const pw = c.password;
    if (pw?.kind === "pbkdf2" && pw.salt.length === 12) {
      out.password = b64(pw.hash);
      out.salt = b64(pw.salt);
      out.iterations = pw.iterations;
    } else if (pw) {
      out.encoded_password = formatHash(pw);
    }
    return out;
  });
  const groups = sorted(d.groups).map((g) => {
    const out: Record<string, unknown> = { groupname: g.groupname };
    if (g.textname !== undefined) out.textname = g.textname;
    if (g.textdescription !== undefined) out.textdescription = g.textdescription;
    out.roles = refsJson(g.roles, "rolename");
    out.clients = refsJson(
      [...g.clients].sort(([a], [b]) => byName(a, b)).map(([name, priority]) => ({
        name,
        priority,
      })),
      "username",
    );
    return out;
  });
  const tree: Record<string, unknown> = {
    defaultACLAccess: { ...d.defaultACLAccess },
    clients,
    groups,
  };
  if (d.anonymousGroup !== undefined) tree.anonymousGroup = d.anonymousGroup;
  tree.roles = sorted(d.roles).map(roleJson);
  return JSON.stringify(tree, null, "\t") + "\n";
}
