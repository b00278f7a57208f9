import { test } from "node:test";
import assert from "node:assert/strict";
import { TopicMatcher } from "../src/broker/matcher.ts";
import { topicMatches } from "../src/broker/topic.ts";
import {
  filterSubject,
  keyTopic,
  levelToken,
  MAX_SUBJECT,
  overflowSubject,
  subjectMatches,
  tokenLevel,
  topicKey,
  topicSubject,
} from "../src/cluster/subject.ts";
import { prng } from "./helpers/prng.ts";

/** Levels chosen to break naive mappings: NATS's special characters, escapes, `$`, unicode. */
const ODD = [
  "",
  "a",
  "b",
  "$SYS",
  "$x",
  "a.b",
  "*",
  ">",
  " ",
  "a b",
  "=",
  "==",
  "=3D",
  "-",
  "_",
  "é",
  "日本",
  "😀",
  "\t",
  "A",
  "s",
  "t",
  "x",
];

const PREFIX = "mg.c1";

test("subject: every level is one token, without '.', '*', '>' or whitespace, and round-trips", () => {
  for (const l of ODD) {
    const t = levelToken(l);
    assert.match(t, /^[-=\w]+$/, `token of ${JSON.stringify(l)}: ${t}`);
    assert.equal(tokenLevel(t), l);
  }
  for (const topic of ["a", "/", "a//b", "$SYS/broker/x", "a.b/*/>", "日本/😀", " / "]) {
    const key = topicKey(topic);
    assert.match(key, /^[-/=.\w]+$/, "a valid JetStream KV key");
    assert.equal(keyTopic(key), topic);
  }
});

/**
 * The property the cluster relies on: NATS matching of the mapped subjects gives exactly the
 * MQTT answer, checked against both of Midge's matchers, over many random filter × topic pairs
 * built from odd levels [MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5]
 * [MQTT-4.7.1-3 v3.1.1][MQTT-4.7.1-2 v5] [MQTT-4.7.2-1] [MQTT-4.7.3-4].
 */
test("subject: NATS matching of mapped subjects equals MQTT matching (property, 20k pairs)", () => {
  const rnd = prng(42);
  const pick = <T>(a: T[]) => a[Math.floor(rnd() * a.length)];
  const randomTopic = () => {
    const n = 1 + Math.floor(rnd() * 4);
    return Array.from({ length: n }, () => pick(ODD)).join("/");
  };
  const randomFilter = () => {
    const n = 1 + Math.floor(rnd() * 4);
    const levels = Array.from({ length: n }, () => {
      const r = rnd();
      return r < 0.25 ? "+" : pick(ODD);
    });
    if (rnd() < 0.3) levels[n - 1] = "#";
    return levels.join("/");
  };
  let mismatches = 0;
  let matched = 0;
  for (let i = 0; i < 20_000; i++) {
    const f = randomFilter();
    const t = randomTopic();
    // Filters and topics made of the same levels often match: force some pairs to be related.
    const topic = i % 3 === 0 ? f.replaceAll("+", pick(ODD)).replace(/#$/, randomTopic()) : t;
    const want = topicMatches(f, topic);
    const sub = filterSubject(PREFIX, f)!;
    const subject = topicSubject(PREFIX, topic)!;
    const got = subjectMatches(sub, subject);
    if (want) matched++;
    if (got !== want) {
      mismatches++;
      assert.fail(`${f} vs ${topic}: MQTT ${want}, NATS ${got} (${sub} / ${subject})`);
    }
  }
  assert.equal(mismatches, 0);
  assert.ok(matched > 2000, `enough matching pairs were tried (${matched})`);
});

test("subject: the WASM matcher agrees on the same pairs", () => {
  const filters = ["#", "+", "+/+", "a/#", "$SYS/#", "+/b", "a/+/c", "/#", "a.b/*/>", "=/#"];
  const topics = ["a", "a/b", "$SYS/x", "/", "a.b/*/>", "a/b/c", "=/x", "b/b", "$x"];
  const m = new TopicMatcher();
  filters.forEach((f, i) => m.add(f, i));
  for (const t of topics) {
    const wasm = new Set(m.match(t));
    filters.forEach((f, i) => {
      const nats = subjectMatches(filterSubject(PREFIX, f)!, topicSubject(PREFIX, t)!);
      assert.equal(nats, wasm.has(i), `${f} vs ${t}`);
    });
  }
});

test("subject: '$' topics never match filters starting with a wildcard [MQTT-4.7.2-1]", () => {
  for (const f of ["#", "+", "+/#", "+/broker/#"]) {
    assert.equal(
      subjectMatches(filterSubject(PREFIX, f)!, topicSubject(PREFIX, "$SYS/broker")!),
      false,
    );
  }
  assert.ok(subjectMatches(filterSubject(PREFIX, "$SYS/#")!, topicSubject(PREFIX, "$SYS/broker")!));
  assert.equal(filterSubject(PREFIX, "a/#"), `${PREFIX}.t.a.>`, "a/# is one subscription");
});

test("subject: topics too long for a subject use the overflow subject, and so do their filters", () => {
  const long = "x".repeat(MAX_SUBJECT);
  assert.equal(topicSubject(PREFIX, long), null);
  assert.equal(filterSubject(PREFIX, long), null);
  assert.equal(filterSubject(PREFIX, long + "/#"), null);
  assert.notEqual(filterSubject(PREFIX, "#"), null);
  assert.equal(overflowSubject(PREFIX), `${PREFIX}.x`);
  // A filter too long for NATS only matches topics that are too long too.
  const rnd = prng(7);
  for (let i = 0; i < 200; i++) {
    const levels = Array.from(
      { length: 200 + Math.floor(rnd() * 800) },
      () => (rnd() < 0.5 ? "+" : "é"),
    );
    const f = levels.join("/");
    const t = levels.map((l) => (l === "+" ? "ab" : l)).join("/");
    if (filterSubject(PREFIX, f) === null) {
      assert.ok(topicMatches(f, t));
      assert.equal(topicSubject(PREFIX, t), null, "its matching topic overflows too");
    }
  }
});

test("subject: a real nats-server routes mapped subjects exactly as MQTT matches (every pair)", async () => {
  const { startNatsCluster } = await import("./helpers/nats.ts");
  const { connect } = await import("@nats-io/transport-node");
  const nats = await startNatsCluster(1, { jetstream: false });
  const nc = await connect({ servers: nats.urls() });
  try {
    const filters = [
      "#",
      "+",
      "+/+",
      "a/#",
      "$SYS/#",
      "+/b",
      "a/+/c",
      "/#",
      "a.b/*/>",
      "=/#",
      "a b/+",
      "é/#",
    ];
    const topics = [
      "a",
      "a/b",
      "$SYS/x",
      "/",
      "a.b/*/>",
      "a/b/c",
      "=/x",
      "b/b",
      "$x",
      "a b/c",
      "é",
      "a/ /c",
    ];
    const got = new Set<string>();
    const subs = filters.map((f) => {
      const sub = nc.subscribe(filterSubject(PREFIX, f)!, {
        callback: (_e, m) => {
          got.add(`${f}\u0000${new TextDecoder().decode(m.data)}`);
        },
      });
      return sub;
    });
    await nc.flush();
    for (const t of topics) nc.publish(topicSubject(PREFIX, t)!, new TextEncoder().encode(t));
    await nc.flush();
    // A request round trip after the publishes: every delivery before it has been dispatched.
    const echo = nc.subscribe(`${PREFIX}.echo`, { callback: (_e, m) => void m.respond() });
    await nc.request(`${PREFIX}.echo`, undefined, { timeout: 5000 });
    echo.unsubscribe();
    let pairs = 0;
    for (const f of filters) {
      for (const t of topics) {
        pairs++;
        assert.equal(got.has(`${f}\u0000${t}`), topicMatches(f, t), `${f} vs ${t}`);
      }
    }
    assert.equal(pairs, 144);
    for (const s of subs) s.unsubscribe();
  } finally {
    await nc.close();
    await nats.stop();
  }
});
