/**
 * The Bun transport's socket state against a stand-in for Bun's socket that takes only part of
 * what it is given, as a real one does when the kernel's send buffer is full: nothing is lost,
 * nothing is sent twice, and bytes handed over with `writeFrom` are copied, since the broker
 * assembles every batch in the same buffer.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { State } from "../src/transport/bun.ts";

/** A socket that accepts at most `room` bytes per write until `room` is raised. */
function fakeSocket() {
  const sent: number[] = [];
  const s = {
    room: 0,
    sent,
    write(buf: Uint8Array, offset = 0, length = buf.length - offset): number {
      const n = Math.min(length, s.room);
      for (let i = 0; i < n; i++) sent.push(buf[offset + i]);
      s.room -= n;
      return n;
    },
    shutdown() {},
    terminate() {},
  };
  return s;
}

const bytes = (from: number, n: number) =>
  Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);

test("writeFrom copies what the socket did not take: the caller's buffer is reused at once", () => {
  const s = fakeSocket();
  const st = new State(s);
  const scratch = new Uint8Array(64);
  s.room = 3;
  scratch.set(bytes(0, 10));
  st.writeFrom(scratch, 10);
  assert.equal(st.bufferedAmount, 7);
  // The broker assembles its next batch in the same buffer while the first is still pending.
  scratch.set(bytes(100, 20));
  st.writeFrom(scratch, 20);
  scratch.fill(0xee);
  assert.equal(st.bufferedAmount, 27);
  s.room = 1000;
  assert.equal(st.flushPending(), true);
  assert.equal(st.bufferedAmount, 0);
  assert.deepEqual(s.sent, [...bytes(0, 10), ...bytes(100, 20)]);
});

test("write keeps the order of pending bytes across partial writes and drains", () => {
  const s = fakeSocket();
  const st = new State(s);
  s.room = 5;
  st.write(bytes(0, 8));
  st.writeFrom(bytes(50, 4), 4);
  st.write(bytes(200, 6));
  assert.equal(st.bufferedAmount, 13);
  s.room = 4;
  assert.equal(st.flushPending(), false, "still more than the socket takes");
  s.room = 100;
  assert.equal(st.flushPending(), true);
  assert.deepEqual(s.sent, [...bytes(0, 8), ...bytes(50, 4), ...bytes(200, 6)]);
});

test("a socket that takes everything keeps nothing pending", () => {
  const s = fakeSocket();
  const st = new State(s);
  s.room = 1 << 20;
  const buf = bytes(7, 30);
  st.writeFrom(buf, 12);
  assert.equal(st.bufferedAmount, 0);
  assert.deepEqual(s.sent, [...bytes(7, 12)]);
});
