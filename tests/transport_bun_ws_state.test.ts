/**
 * The Bun WebSocket listener's socket against a stand-in for Bun's ServerWebSocket that, like
 * the real one, refuses a message outright (`sendBinary` returns 0) once it holds more than its
 * backpressure limit: what is refused is kept, counted and sent again on drain, in order and
 * once; a close asked for meanwhile waits for it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WsSocket } from "../src/transport/bun_ws.ts";
import type { SocketHandlers } from "../src/transport/types.ts";

/** A ServerWebSocket holding at most `limit` bytes; `flushed(n)` lets the peer read n bytes. */
function fakeWs(limit: number) {
  const ws = {
    buffered: 0,
    sent: [] as number[],
    closes: [] as number[],
    terminated: false,
    sendBinary(b: Uint8Array): number {
      if (ws.buffered > limit) return 0;
      ws.sent.push(b[0]);
      ws.buffered += b.length;
      return ws.buffered > limit ? -1 : b.length;
    },
    getBufferedAmount: () => ws.buffered,
    close(code: number) {
      ws.closes.push(code);
    },
    terminate() {
      ws.terminated = true;
    },
    flushed(n: number) {
      ws.buffered = Math.max(0, ws.buffered - n);
    },
  };
  return ws;
}

/** A message of `n` bytes whose first byte is `tag`. */
const msg = (tag: number, n = 10) => new Uint8Array(n).fill(tag);

function handlers() {
  const h = { drains: 0, closes: 0 } as SocketHandlers & { drains: number; closes: number };
  h.onData = () => {};
  h.onClose = () => h.closes++;
  h.onDrain = () => h.drains++;
  return h;
}

test("a socket that takes everything keeps nothing", () => {
  const ws = fakeWs(1000);
  const s = new WsSocket(ws, "127.0.0.1", 1);
  s.write(msg(1));
  s.write(msg(2));
  assert.deepEqual(ws.sent, [1, 2]);
  assert.equal(s.pending, null);
  assert.equal(s.bufferedAmount, 20);
});

test("messages refused over the backpressure limit are kept, counted, and sent on drain in order, once", () => {
  const ws = fakeWs(25);
  const s = new WsSocket(ws, "127.0.0.1", 1);
  const h = handlers();
  s.h = h;
  for (let i = 1; i <= 6; i++) s.write(msg(i));
  // Three taken (the third past the limit, queued by Bun), three refused and kept here.
  assert.deepEqual(ws.sent, [1, 2, 3]);
  assert.equal(s.bufferedAmount, 60, "Bun's 30 bytes and the 30 kept");
  ws.flushed(20);
  s.drained();
  assert.deepEqual(ws.sent, [1, 2, 3, 4, 5], "sent until Bun refuses again");
  assert.equal(s.bufferedAmount, 40);
  s.write(msg(7));
  assert.deepEqual(ws.sent, [1, 2, 3, 4, 5], "a new message waits behind the kept ones");
  ws.flushed(100);
  s.drained();
  assert.deepEqual(ws.sent, [1, 2, 3, 4, 5, 6, 7]);
  assert.equal(s.pending, null);
  assert.equal(h.drains, 2);
});

test("end() with messages kept closes only once they are sent; the close drops what is left", () => {
  const ws = fakeWs(15);
  const s = new WsSocket(ws, "127.0.0.1", 1);
  const h = handlers();
  s.h = h;
  for (let i = 1; i <= 5; i++) s.write(msg(i));
  assert.deepEqual(ws.sent, [1, 2]);
  s.end();
  assert.deepEqual(ws.closes, [], "not before what is kept");
  ws.flushed(100);
  s.drained();
  assert.deepEqual(ws.sent, [1, 2, 3, 4]);
  assert.deepEqual(ws.closes, [], "one message still kept");
  ws.flushed(100);
  s.drained();
  assert.deepEqual(ws.sent, [1, 2, 3, 4, 5]);
  assert.deepEqual(ws.closes, [1000]);
  s.gone();
  s.gone();
  assert.equal(h.closes, 1);
  assert.equal(s.bufferedAmount, 0);
  s.write(msg(9));
  assert.deepEqual(ws.sent, [1, 2, 3, 4, 5], "nothing is sent after the close");
});
