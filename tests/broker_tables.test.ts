/** The broker's connection list and session table (src/broker/tables.ts). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionList, SessionTable } from "../src/broker/tables.ts";

const item = (name: string) => ({ name, slot: -1 });

test("ConnectionList: add, delete from the middle, size and membership", () => {
  const list = new ConnectionList<ReturnType<typeof item>>();
  const [a, b, c, d] = ["a", "b", "c", "d"].map(item);
  for (const x of [a, b, c, d]) list.add(x);
  list.add(b); // a second add is a no-op
  assert.equal(list.size, 4);
  assert.equal(list.delete(b), true);
  assert.equal(list.delete(b), false, "already gone");
  assert.equal([...list].includes(b), false);
  assert.equal(b.slot, -1);
  assert.equal(list.size, 3);
  assert.deepEqual([...list].map((x) => x.name).sort(), ["a", "c", "d"]);
  for (const x of [a, c, d]) assert.equal([...list].includes(x), true);
  assert.equal(list.delete(item("stranger")), false);
});

test("ConnectionList: removing each connection while walking visits every one once", () => {
  const list = new ConnectionList<ReturnType<typeof item>>();
  const all = Array.from({ length: 50 }, (_, i) => item(`c${i}`));
  for (const x of all) list.add(x);
  const seen: string[] = [];
  for (const x of list) {
    seen.push(x.name);
    if (Number(x.name.slice(1)) % 3 !== 0) list.delete(x); // a sweep closing some of them
  }
  assert.deepEqual([...seen].sort(), all.map((x) => x.name).sort());
  assert.equal(list.size, 17);
  assert.deepEqual(
    [...list].map((x) => x.name).sort(),
    all.filter((_, i) => i % 3 === 0).map((x) => x.name).sort(),
  );
});

test("SessionTable: any client id is a key, __proto__ and numbers included", () => {
  const t = new SessionTable<{ id: string }>();
  const ids = ["__proto__", "constructor", "toString", "0", "4294967295", "", "a/b", "ü-😀"];
  for (const id of ids) t.set(id, { id });
  assert.equal(t.size, ids.length);
  for (const id of ids) {
    assert.equal(t.has(id), true, id);
    assert.equal(t.get(id)!.id, id);
  }
  assert.equal(t.get("hasOwnProperty"), undefined, "nothing inherited");
  t.set("0", { id: "zero again" });
  assert.equal(t.size, ids.length, "replacing keeps the size");
  assert.equal(t.delete("__proto__"), true);
  assert.equal(t.delete("__proto__"), false);
  assert.equal(t.size, ids.length - 1);
  assert.deepEqual(
    [...t.values()].map((v) => v.id).sort(),
    ids.filter((id) => id !== "__proto__" && id !== "0").concat("zero again").sort(),
  );
});

test("SessionTable: deleting while walking the values skips what is gone", () => {
  const t = new SessionTable<number>();
  for (let i = 0; i < 100; i++) t.set(`s${i}`, i);
  const seen: number[] = [];
  for (const v of t.values()) {
    seen.push(v);
    t.delete(`s${v + 1}`); // the next one goes before it is reached
  }
  assert.equal(seen.length, 50);
  assert.equal(t.size, 50);
  assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i * 2));
});
