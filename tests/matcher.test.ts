import { test } from "node:test";
import assert from "node:assert/strict";
import { TopicMatcher } from "../src/broker/matcher.ts";
import {
  InvalidSharedFilter,
  parseShared,
  topicMatches,
  validTopicFilter,
  validTopicName,
} from "../src/broker/topic.ts";
import { collidingLevels, oldLevelHash, randomLevels } from "../bench/hashflood_keys.ts";
import { prng } from "./helpers/prng.ts";

/** Asserts that the reference `topicMatches` and the WASM matcher agree with `expected`. */
function expectMatch(filter: string, topic: string, expected: boolean): void {
  assert.equal(topicMatches(filter, topic), expected, `topicMatches("${filter}", "${topic}")`);
  const m = new TopicMatcher();
  m.add(filter, 7);
  assert.deepEqual([...m.match(topic)], expected ? [7] : [], `match "${filter}" / "${topic}"`);
}

function sorted(a: Iterable<number>): number[] {
  return [...a].sort((x, y) => x - y);
}

// ---- validity ----

test("[MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5] '#' must be the last character and alone in its level", () => {
  for (const f of ["#", "sport/#", "sport/tennis/#", "/#", "+/#", "a//#"]) {
    assert.ok(validTopicFilter(f), f);
  }
  for (const f of ["sport/tennis#", "sport/tennis/#/ranking", "#/", "##", "a/#b", "a/b#", "#a"]) {
    assert.equal(validTopicFilter(f), false, f);
  }
});

test("[MQTT-4.7.1-3 v3.1.1][MQTT-4.7.1-2 v5] '+' must occupy an entire level", () => {
  for (const f of ["+", "+/tennis/#", "sport/+/player1", "+/+", "/+", "+/", "a/+/+/b"]) {
    assert.ok(validTopicFilter(f), f);
  }
  for (const f of ["sport+", "sport/+player1", "a/++", "+a/b", "a/b+/c"]) {
    assert.equal(validTopicFilter(f), false, f);
  }
});

test("[MQTT-4.7.3-1] topic names and filters are at least one character long", () => {
  assert.equal(validTopicFilter(""), false);
  assert.equal(validTopicName(""), false);
  assert.ok(validTopicName("/"));
  assert.ok(validTopicFilter("/"));
});

test("[MQTT-4.7.3-2] [MQTT-1.5.3-1 v3.1.1] no U+0000 and no unpaired surrogates", () => {
  assert.equal(validTopicName("a\u0000b"), false);
  assert.equal(validTopicFilter("a/\u0000"), false);
  assert.equal(validTopicName("a\ud800b"), false);
  assert.equal(validTopicFilter("\udc00"), false);
  assert.ok(validTopicName("caf\u00e9/\u{1f600}"));
});

test("[MQTT-4.7.3-3] topic names and filters are at most 65535 UTF-8 bytes", () => {
  assert.ok(validTopicName("a".repeat(65535)));
  assert.equal(validTopicName("a".repeat(65536)), false);
  assert.ok(validTopicFilter("\u00e9".repeat(32767) + "a")); // 65535 bytes
  assert.equal(validTopicFilter("\u00e9".repeat(32768)), false); // 65536 bytes
});

test("[MQTT-3.3.2-2] a topic name contains no wildcard characters", () => {
  for (const t of ["a/+", "#", "a/b#", "+"]) assert.equal(validTopicName(t), false, t);
  for (const t of ["a/b", "$SYS/x", "Accounts payable", "//"]) assert.ok(validTopicName(t), t);
});

test("[MQTT-4.8.2-1 v5] [MQTT-4.8.2-2 v5] parseShared splits $share/<group>/<filter>", () => {
  assert.deepEqual(parseShared("$share/g/a/b"), { group: "g", filter: "a/b" });
  assert.deepEqual(parseShared("$share/grp/#"), { group: "grp", filter: "#" });
  assert.deepEqual(parseShared("$share/g//x"), { group: "g", filter: "/x" });
  assert.equal(parseShared("a/b"), null);
  assert.equal(parseShared("$SYS/#"), null);
  assert.equal(parseShared("$share"), null); // not "$share/": an ordinary filter
  for (
    const f of ["$share//a", "$share/g", "$share/g/", "$share/g+/a", "$share/#/a", "$share/g/a/#/b"]
  ) {
    assert.throws(() => parseShared(f), InvalidSharedFilter, f);
  }
});

// ---- matching: the rules and the examples of §4.7 ----

test("[MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5] spec example: sport/tennis/player1/# matches the parent and below", () => {
  const f = "sport/tennis/player1/#";
  expectMatch(f, "sport/tennis/player1", true);
  expectMatch(f, "sport/tennis/player1/ranking", true);
  expectMatch(f, "sport/tennis/player1/score/wimbledon", true);
  expectMatch(f, "sport/tennis/player2", false);
  expectMatch(f, "sport/tennis", false);
  expectMatch("sport/#", "sport", true);
  expectMatch("#", "sport/tennis/player1", true);
  expectMatch("#", "/", true);
  expectMatch("a/#", "a/", true);
  expectMatch("a/#", "ab", false);
});

test("[MQTT-4.7.1-3 v3.1.1][MQTT-4.7.1-2 v5] spec example: '+' matches exactly one level, an empty one too", () => {
  expectMatch("sport/tennis/+", "sport/tennis/player1", true);
  expectMatch("sport/tennis/+", "sport/tennis/player2", true);
  expectMatch("sport/tennis/+", "sport/tennis/player1/ranking", false);
  expectMatch("sport/+", "sport", false);
  expectMatch("sport/+", "sport/", true);
  expectMatch("+/+", "/finance", true);
  expectMatch("/+", "/finance", true);
  expectMatch("+", "/finance", false);
  expectMatch("+", "finance", true);
  expectMatch("+/tennis/#", "sport/tennis", true);
  expectMatch("sport/+/player1", "sport/tennis/player1", true);
  expectMatch("sport/+/player1", "sport//player1", true);
  expectMatch("+/+/+", "//", true);
  expectMatch("+", "", true);
});

test("[MQTT-4.7.2-1] wildcards at the first level do not match topics starting with '$'", () => {
  expectMatch("#", "$SYS/monitor/Clients", false);
  expectMatch("+/monitor/Clients", "$SYS/monitor/Clients", false);
  expectMatch("+", "$SYS", false);
  expectMatch("+/#", "$SYS", false);
  expectMatch("$SYS/#", "$SYS/monitor/Clients", true);
  expectMatch("$SYS/#", "$SYS", true);
  expectMatch("$SYS/monitor/+", "$SYS/monitor/Clients", true);
  expectMatch("a/+", "a/$b", true); // only the first level is special
  expectMatch("a/#", "a/$b", true);
  expectMatch("#", "a$", true);
});

test("[MQTT-4.7.3-4] levels compare byte for byte: case, spaces, empty levels, no normalization", () => {
  expectMatch("ACCOUNTS", "Accounts", false);
  expectMatch("Accounts", "Accounts", true);
  expectMatch("Accounts payable", "Accounts payable", true);
  expectMatch("a//b", "a/b", false);
  expectMatch("a//b", "a//b", true);
  expectMatch("/a", "a", false);
  expectMatch("a", "a/", false);
  expectMatch("a/", "a/", true);
  expectMatch("caf\u00e9", "cafe\u0301", false); // no Unicode normalization
  expectMatch("caf\u00e9/\u{1f600}/+", "caf\u00e9/\u{1f600}/x", true);
});

// ---- the matcher's own contract ----

test("add returns false for an existing (filter, id); size counts entries", () => {
  const m = new TopicMatcher();
  assert.equal(m.add("a/b", 1), true);
  assert.equal(m.add("a/b", 1), false);
  assert.equal(m.add("a/b", 2), true);
  assert.equal(m.add("a/+", 1), true);
  assert.equal(m.add("a/#", 1), true);
  assert.equal(m.add("a/#", 1), false);
  assert.equal(m.size, 4);
  assert.equal(m.remove("a/b", 3), false);
  assert.equal(m.remove("x/y", 1), false);
  assert.equal(m.remove("a/b", 1), true);
  assert.equal(m.remove("a/b", 1), false);
  assert.equal(m.size, 3);
  assert.throws(() => m.add("a/#/b", 1), RangeError);
  assert.equal(m.remove("a/#/b", 1), false);
});

test("an id under several matching filters appears once per filter", () => {
  const m = new TopicMatcher();
  for (const f of ["a/b", "a/+", "+/b", "#", "a/#", "+/+", "a/b/#"]) m.add(f, 5);
  m.add("a/c", 5);
  m.add("a/b", 9);
  assert.deepEqual(sorted(m.match("a/b")), [5, 5, 5, 5, 5, 5, 5, 9]);
  assert.deepEqual(sorted(m.match("a/c")), [5, 5, 5, 5, 5]);
});

test("ids are unsigned 32-bit values", () => {
  const m = new TopicMatcher();
  m.add("x", 0xffffffff);
  m.add("x", 0);
  assert.deepEqual(sorted(m.match("x")), [0, 0xffffffff]);
});

test("long topics, multi-byte UTF-8 and input region growth", () => {
  const m = new TopicMatcher();
  const long = "l".repeat(300) + "/" + "\u00e9".repeat(200) + "/end";
  m.add(long, 1);
  m.add("+/" + "\u00e9".repeat(200) + "/+", 2);
  m.add("+/+/#", 3);
  assert.deepEqual(sorted(m.match(long)), [1, 2, 3]);
  const huge = "h".repeat(65000) + "/x";
  m.add(huge, 4);
  assert.deepEqual(sorted(m.match(huge)), [3, 4]);
  assert.deepEqual(sorted(m.match("a/\u{1f600}")), [3]);
  assert.deepEqual(sorted(m.match("l".repeat(300))), []);
});

test("deep topics (2000 levels) and wide '+' fan-out", () => {
  const m = new TopicMatcher();
  const deep = Array.from({ length: 2000 }, (_, i) => `l${i % 7}`).join("/");
  m.add(deep, 1);
  m.add(deep.replace(/l3/g, "+"), 2);
  m.add("l0/#", 3);
  assert.deepEqual(sorted(m.match(deep)), [1, 2, 3]);
  // Every filter over {a,+}^9: 512 filters match a/a/a/a/a/a/a/a/a, the frontier reaches 256.
  const w = new TopicMatcher();
  for (let mask = 0; mask < 512; mask++) {
    const levels = [];
    for (let i = 0; i < 9; i++) levels.push(mask & (1 << i) ? "+" : "a");
    w.add(levels.join("/"), mask);
  }
  assert.deepEqual(sorted(w.match("a/a/a/a/a/a/a/a/a")), Array.from({ length: 512 }, (_, i) => i));
  assert.deepEqual(sorted(w.match("b/a/a/a/a/a/a/a/a")).length, 256);
});

test("large result sets grow the result region", () => {
  const m = new TopicMatcher();
  for (let i = 0; i < 20000; i++) m.add(i % 2 ? "#" : "big/+", i);
  const r = m.match("big/x");
  assert.equal(r.length, 20000);
  assert.deepEqual(sorted(r), Array.from({ length: 20000 }, (_, i) => i));
  assert.equal(m.match("other").length, 10000);
});

test("matching work does not depend on the number of subscriptions that cannot match", () => {
  const m = new TopicMatcher();
  const relevant = ["devices/d1/+/temp", "devices/+/s/temp", "devices/#", "#", "+/d1/s/temp"];
  relevant.forEach((f, i) => m.add(f, i));
  const topic = "devices/d1/s/temp";
  assert.equal(m.match(topic).length, 5);
  const work = m.wasm.lastVisited();
  assert.ok(work > 0);
  // 100,000 subscriptions that cannot match: siblings, deeper paths, other roots.
  for (let i = 0; i < 100_000; i++) {
    const f = i % 4 === 0
      ? `devices/d${i + 2}/+/temp`
      : i % 4 === 1
      ? `devices/d1/s${i}/temp`
      : i % 4 === 2
      ? `other${i}/#`
      : `devices/d1/+/temp/${i}`;
    m.add(f, 1000 + i);
  }
  assert.deepEqual(sorted(m.match(topic)), [0, 1, 2, 3, 4]);
  assert.equal(m.wasm.lastVisited(), work);
});

test("randomized differential test against topicMatches with interleaved add/remove", () => {
  const rnd = prng(20240611);
  const alphabet = ["a", "b", "c", "", "$s", "A", "\u00e9", "ab"];
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
  const randomLevels = (wild: boolean): string[] => {
    const n = 1 + Math.floor(rnd() * 4);
    const levels = [];
    for (let i = 0; i < n; i++) levels.push(wild && rnd() < 0.3 ? "+" : pick(alphabet));
    if (wild && rnd() < 0.2) levels.push("#");
    return levels.join("/") === "" ? randomLevels(wild) : levels; // never the empty string
  };
  const m = new TopicMatcher();
  const model = new Map<string, Set<number>>(); // filter -> ids
  let entries = 0;
  for (let round = 0; round < 40; round++) {
    for (let op = 0; op < 100; op++) {
      const filter = randomLevels(true).join("/");
      const id = Math.floor(rnd() * 16);
      const ids = model.get(filter) ?? new Set<number>();
      if (rnd() < 0.6) {
        assert.equal(m.add(filter, id), !ids.has(id), `add ${filter} ${id}`);
        if (!ids.has(id)) entries++;
        ids.add(id);
        model.set(filter, ids);
      } else {
        // Remove mostly existing entries.
        let f = filter;
        let i = id;
        if (model.size > 0 && rnd() < 0.8) {
          f = pick([...model.keys()]);
          i = pick([...model.get(f)!]);
        }
        const had = model.get(f)?.has(i) ?? false;
        assert.equal(m.remove(f, i), had, `remove ${f} ${i}`);
        if (had) {
          entries--;
          model.get(f)!.delete(i);
          if (model.get(f)!.size === 0) model.delete(f);
        }
      }
    }
    assert.equal(m.size, entries);
    for (let q = 0; q < 75; q++) {
      const topic = randomLevels(false).join("/");
      const expected: number[] = [];
      for (const [f, ids] of model) if (topicMatches(f, topic)) expected.push(...ids);
      assert.deepEqual(sorted(m.match(topic)), sorted(expected), `topic "${topic}"`);
    }
  }
  // Remove everything: the trie shrinks back to the root.
  for (const [f, ids] of model) for (const id of ids) assert.ok(m.remove(f, id));
  assert.equal(m.size, 0);
  assert.equal(m.nodeCount, 1);
});

test("200k subscriptions added and removed: nodes freed, memory reused, matching correct", () => {
  const m = new TopicMatcher();
  const N = 200_000;
  const filterOf = (i: number) =>
    i % 4 === 0
      ? `devices/d${i}/+/temp`
      : i % 4 === 1
      ? `site/${i % 1000}/#`
      : i % 4 === 2
      ? `exact/topic/${i}`
      : `r/${i % 97}/${i % 89}/+`;
  const fill = () => {
    for (let i = 0; i < N; i++) assert.ok(m.add(filterOf(i), i));
    assert.equal(m.size, N);
    assert.deepEqual(sorted(m.match("devices/d400/x/temp")), [400]);
    assert.equal(m.match("site/5/a/b").length, N / 1000); // the ids ≡ 5 (mod 1000)
    assert.deepEqual(sorted(m.match("exact/topic/1002")), [1002]);
    assert.deepEqual(m.match("exact/topic/1003").length, 0);
    assert.deepEqual(sorted(m.match("r/3/3/z")), sorted(rIds(3, 3)));
  };
  const rIds = (a: number, b: number) => {
    const r = [];
    for (let i = 3; i < N; i += 4) if (i % 97 === a && i % 89 === b) r.push(i);
    return r;
  };
  fill();
  const top = m.heapBytes;
  for (let i = 0; i < N; i++) assert.ok(m.remove(filterOf(i), i));
  assert.equal(m.size, 0);
  assert.equal(m.nodeCount, 1);
  assert.equal(m.match("devices/d400/x/temp").length, 0);
  assert.equal(m.match("site/5/a/b").length, 0);
  fill();
  assert.equal(m.heapBytes, top, "the second fill reuses the freed memory");
});

// ---- hash flooding (issue: fixed-seed invertible level hash) ----

test("hash flooding: level names that collide under an unkeyed hash make no long probe chains", () => {
  const colliding = collidingLevels(10_000);
  // The attack itself: every name has the same hash under the former, unkeyed level hash.
  const enc = new TextEncoder();
  assert.equal(new Set(colliding.map((l) => oldLevelHash(enc.encode(l)))).size, 1);
  const m = new TopicMatcher();
  colliding.forEach((l, i) => assert.ok(m.add(`flood/${l}`, i)));
  // With the former hash every one of them sat in one chain (longest probe ≈ 10,000). Random
  // names give a longest probe of about 20–50 here; 200 is out of reach for keyed hashes.
  assert.ok(m.longestProbe < 200, `longest probe ${m.longestProbe}`);
  const control = new TopicMatcher();
  randomLevels(10_000).forEach((l, i) => control.add(`flood/${l}`, i));
  assert.ok(control.longestProbe < 200, `longest probe (random names) ${control.longestProbe}`);
  // Every colliding name is still found, and removed.
  for (let i = 0; i < colliding.length; i += 97) {
    assert.deepEqual([...m.match(`flood/${colliding[i]}`)], [i]);
  }
  colliding.forEach((l, i) => assert.ok(m.remove(`flood/${l}`, i)));
  assert.equal(m.nodeCount, 1);
  assert.equal(m.longestProbe, 0);
});

test("hash flooding: each matcher draws its own secret hash key", () => {
  const a = new TopicMatcher();
  const b = new TopicMatcher();
  const levels = ["temp", "sensor1", "a", "", "a-much-longer-level-name-of-40-bytes!!"];
  // Equal hashes for all five levels under two random 128-bit keys: probability 2^-160.
  assert.notDeepEqual(levels.map((l) => a.levelHash(l)), levels.map((l) => b.levelHash(l)));
  // Within one matcher the hash is a function of the bytes.
  assert.deepEqual(levels.map((l) => a.levelHash(l)), levels.map((l) => a.levelHash(l)));
});

test("memory freed by removed subscriptions is reused by later ones of any shape", () => {
  const m = new TopicMatcher();
  const tops: number[] = [];
  const sizes: number[] = [];
  for (let round = 0; round < 6; round++) {
    // Each round's levels have other lengths than the last: blocks of other sizes.
    const filters = Array.from(
      { length: 5000 },
      (_, i) => `s/${"x".repeat((i * 7 + round * 37) % 300)}/${i}/+/${"z".repeat(round * 3)}`,
    );
    filters.forEach((f, i) => assert.ok(m.add(f, i)));
    assert.deepEqual([...m.match(filters[7].replace("+", "q"))], [7]);
    filters.forEach((f, i) => assert.ok(m.remove(f, i)));
    assert.equal(m.nodeCount, 1);
    tops.push(m.heapBytes);
    sizes.push(m.wasm.memory.buffer.byteLength);
  }
  // Freed blocks merge with their free neighbours and the top goes back down: after the first
  // round nothing grows.
  assert.deepEqual(tops, Array(6).fill(tops[0]));
  assert.deepEqual(sizes, Array(6).fill(sizes[0]));
});

test("named children move from a node's list to the edge table past 8 and back once none are left", () => {
  const m = new TopicMatcher();
  for (const count of [1, 8, 9, 20]) {
    const names = Array.from({ length: count }, (_, i) => `c${i}`);
    names.forEach((n, i) => assert.ok(m.add(`p/${n}/x`, i)));
    assert.ok(m.add("p/+/x", 999));
    for (let i = 0; i < count; i++) assert.deepEqual(sorted(m.match(`p/c${i}/x`)), [i, 999]);
    assert.deepEqual([...m.match("p/other/x")], [999]);
    // Remove from the middle, the ends, then the rest; the others stay found.
    const order = [Math.floor(count / 2), 0, count - 1, ...names.keys()];
    const gone = new Set<number>();
    for (const i of order) {
      if (gone.has(i)) continue;
      assert.ok(m.remove(`p/c${i}/x`, i));
      gone.add(i);
      for (let j = 0; j < count; j++) {
        assert.deepEqual(sorted(m.match(`p/c${j}/x`)), gone.has(j) ? [999] : [j, 999]);
      }
    }
    assert.ok(m.remove("p/+/x", 999));
    assert.equal(m.nodeCount, 1);
    assert.equal(m.longestProbe, 0);
  }
});
