/**
 * Interoperability with Eclipse Paho's Python client (paho-mqtt 1.6, Debian package
 * python3-paho-mqtt) at MQTT 3.1.1 and 5.0. The broker runs in this process; each test runs one
 * small Python script (`python3 -c`) that prints what it saw as JSON lines, and the test checks
 * those lines.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { startBroker, type TestBroker } from "./helpers/broker.ts";

/** Debian's interpreter: the one python3-paho-mqtt installs into. */
const PYTHON = "/usr/bin/python3";

/** Helpers shared by every script: argv is PORT VERSION ("311" or "5"). */
const PRELUDE = `
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

PORT = int(sys.argv[1])
V5 = sys.argv[2] == "5"

def out(kind, **kw):
    print(json.dumps(dict(kind=kind, **kw)), flush=True)

def wait(cond, what, timeout=10):
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            out("timeout", what=what)
            sys.exit(3)
        time.sleep(0.005)

def props_dict(p):
    if p is None:
        return {}
    d = {}
    for k, v in p.json().items():
        d[k] = v.decode() if isinstance(v, bytes) else v
    return d

def code(rc):
    return rc.value if hasattr(rc, "value") else rc

class C:
    """A paho client with everything it receives recorded; connected on construction."""
    def __init__(self, cid, clean=True, will=None, props=None, thread=True):
        self.msgs, self.subacks, self.pubs = [], [], set()
        self.connack = None
        self.disconnected = None
        if V5:
            self.c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
        else:
            self.c = mqtt.Client(client_id=cid, clean_session=clean, protocol=mqtt.MQTTv311)
        c = self.c
        c.on_connect = self._connect
        c.on_message = lambda cl, u, m: self.msgs.append(m)
        c.on_subscribe = lambda cl, u, mid, granted, p=None: self.subacks.append([code(g) for g in granted])
        c.on_publish = lambda cl, u, mid: self.pubs.add(mid)
        c.on_disconnect = self._disconnect
        if will:
            c.will_set(**will)
        if V5:
            c.connect("127.0.0.1", PORT, 60, clean_start=clean, properties=props)
        else:
            c.connect("127.0.0.1", PORT, 60)
        self.thread = thread
        if thread:
            c.loop_start()
            wait(lambda: self.connack is not None, "CONNACK")
        else:
            while self.connack is None:
                c.loop(0.05)

    def _connect(self, cl, u, flags, rc, p=None):
        self.connack = dict(rc=code(rc), session_present=flags.get("session present"), props=props_dict(p))

    def _disconnect(self, cl, u, rc, p=None):
        self.disconnected = code(rc)

    def sub(self, topic, qos, **opts):
        n = len(self.subacks)
        if V5:
            self.c.subscribe(topic, options=SubscribeOptions(qos=qos, **opts), properties=opts.get("props"))
        else:
            self.c.subscribe(topic, qos)
        wait(lambda: len(self.subacks) > n, "SUBACK " + topic)
        return self.subacks[-1]

    def pub(self, topic, payload, qos=0, retain=False, props=None):
        info = self.c.publish(topic, payload, qos, retain, properties=props)
        if qos > 0:
            wait(lambda: info.mid in self.pubs, "ack of " + topic)
        else:
            info.wait_for_publish(10)

    def wait_msgs(self, n, what="messages"):
        wait(lambda: len(self.msgs) >= n, what)

    def report(self, name):
        for m in self.msgs:
            out("msg", client=name, topic=m.topic, payload=m.payload.decode(), qos=m.qos,
                retain=bool(m.retain), props=props_dict(getattr(m, "properties", None)) if V5 else {})
        self.msgs = []

    def close(self):
        self.c.disconnect()
        if self.thread:
            self.c.loop_stop()
`;

interface Line {
  kind: string;
  // deno-lint-ignore no-explicit-any
  [k: string]: any;
}

/** Run PRELUDE + body with `PORT VERSION`; return the JSON lines (asserts exit 0). */
async function python(tb: TestBroker, version: "311" | "5", body: string): Promise<Line[]> {
  if (!existsSync(PYTHON)) {
    throw new Error(
      `${PYTHON} is not installed: these interoperability tests need Debian's python3 and ` +
        `python3-paho-mqtt packages (apt-get install python3-paho-mqtt; .ci/run does this)`,
    );
  }
  const child = spawn(PYTHON, ["-c", PRELUDE + body, String(tb.port), version], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const guard = setTimeout(() => child.kill("SIGKILL"), 30000);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (c) => resolve(c));
  }).finally(() => clearTimeout(guard));
  if (/No module named 'paho'/.test(stderr)) {
    throw new Error(
      `paho-mqtt is not installed for ${PYTHON}: apt-get install python3-paho-mqtt (.ci/run does this)`,
    );
  }
  assert.equal(code, 0, `python exited with ${code}\n${stdout}${stderr}`);
  return stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

/** paho's Properties.json() shows binary data as hex. */
const hex = (s: string) =>
  [...new TextEncoder().encode(s)].map((b) => b.toString(16).padStart(2, "0")).join("");
const of = (lines: Line[], kind: string) => lines.filter((l) => l.kind === kind);
const brief = (m: Line) => [m.topic, m.payload, m.qos, m.retain];

for (const v of ["311", "5"] as const) {
  const name = v === "5" ? "MQTTv5" : "MQTTv311";
  test(`paho ${name}: subscribe and publish QoS 0/1/2, retained messages [MQTT-3.3.1-8 v3.1.1][MQTT-3.8.4-6 v3.1.1][MQTT-3.8.4-8 v5]`, async () => {
    const tb = await startBroker();
    try {
      const lines = await python(
        tb,
        v,
        `
s = C("paho-sub")
out("connack", **s.connack)
out("suback", granted=s.sub("t/#", 2))
out("suback", granted=s.sub("low/#", 1))
p = C("paho-pub")
for q in (0, 1, 2):
    p.pub("t/%d" % q, "msg%d" % q, q)
p.pub("low/2", "downgraded", 2)
s.wait_msgs(4)
s.report("s")
p.pub("keep/a", "kept", 1, retain=True)
p.pub("keep/b", "gone", 1, retain=True)
p.pub("keep/b", "", 1, retain=True)
r = C("paho-late")
r.sub("keep/#", 2)
r.wait_msgs(1)
p.pub("keep/a", "live", 1, retain=True)
r.wait_msgs(2)
r.report("r")
for c in (s, p, r):
    c.close()
`,
      );
      const [connack] = of(lines, "connack");
      assert.equal(connack.rc, 0);
      assert.equal(connack.session_present, 0);
      assert.deepEqual(of(lines, "suback").map((l) => l.granted), [[2], [1]]);
      const msgs = of(lines, "msg");
      // paho hands a QoS 2 message to the application only after PUBREL, so a QoS 1 message
      // sent after it may reach the application first: compared without their order.
      const byTopic = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]));
      assert.deepEqual(msgs.filter((m) => m.client === "s").map(brief).sort(byTopic), [
        ["low/2", "downgraded", 1, false],
        ["t/0", "msg0", 0, false],
        ["t/1", "msg1", 1, false],
        ["t/2", "msg2", 2, false],
      ]);
      // A new subscriber gets the retained message flagged; the cleared one is gone
      // [MQTT-3.3.1-10 v3.1.1]; a live message on the same topic comes with retain 0.
      assert.deepEqual(msgs.filter((m) => m.client === "r").map(brief), [
        ["keep/a", "kept", 1, true],
        ["keep/a", "live", 1, false],
      ]);
    } finally {
      await tb.stop();
    }
  });

  test(`paho ${name}: a persistent session queues QoS 1/2 while offline and is resumed [MQTT-3.1.2-4 v3.1.1][MQTT-3.2.2-2 v3.1.1]`, async () => {
    const tb = await startBroker();
    try {
      const lines = await python(
        tb,
        v,
        `
def persistent():
    if V5:
        pr = Properties(PacketTypes.CONNECT)
        pr.SessionExpiryInterval = 300
        return C("paho-persist", clean=False, props=pr)
    return C("paho-persist", clean=False)
a = persistent()
out("first", **a.connack)
a.sub("q/#", 2)
a.close()
wait(lambda: a.disconnected is not None, "disconnect")
p = C("paho-pub")
p.pub("q/1", "one", 1)
p.pub("q/2", "two", 2)
p.pub("q/0", "zero", 0)
p.close()
b = persistent()
out("second", **b.connack)
b.wait_msgs(2)
p = C("paho-pub2")
p.pub("q/0", "live", 0)
b.wait_msgs(3)
b.report("b")
b.close()
p.close()
`,
      );
      assert.equal(of(lines, "first")[0].session_present, 0);
      assert.equal(of(lines, "second")[0].session_present, 1);
      // QoS 0 is not queued while offline (queue_qos0_messages = false); the live one arrives.
      assert.deepEqual(of(lines, "msg").map(brief), [
        ["q/1", "one", 1, false],
        ["q/2", "two", 2, false],
        ["q/0", "live", 0, false],
      ]);
    } finally {
      await tb.stop();
    }
  });

  test(`paho ${name}: the will is published when the connection drops, not after DISCONNECT [MQTT-3.1.2-8][MQTT-3.1.2-10]`, async () => {
    const tb = await startBroker();
    try {
      const lines = await python(
        tb,
        v,
        `
w = C("paho-watch")
w.sub("will/#", 1)
wp = None
if V5:
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.ContentType = "text/plain"
    wp.UserProperty = ("why", "dropped")
calm = C("paho-calm", will=dict(topic="will/calm", payload="calm", qos=1))
calm.close()
wait(lambda: calm.disconnected is not None, "calm disconnect")
v = C("paho-victim", will=dict(topic="will/victim", payload="gone", qos=1, retain=True, properties=wp), thread=False)
v.c.socket().close()  # no DISCONNECT: the broker sees the connection drop
w.wait_msgs(1)
p = C("paho-pub")
p.pub("will/end", "sentinel", 1)
w.wait_msgs(2)
w.report("w")
late = C("paho-late")
late.sub("will/#", 1)
late.wait_msgs(1)
late.report("late")
for c in (w, p, late):
    c.close()
`,
      );
      const msgs = of(lines, "msg");
      assert.deepEqual(msgs.filter((m) => m.client === "w").map(brief), [
        ["will/victim", "gone", 1, false],
        ["will/end", "sentinel", 1, false],
      ]);
      // Will Retain: the will was also retained [MQTT-3.1.2-17 v3.1.1][MQTT-3.1.2-15 v5].
      assert.deepEqual(msgs.filter((m) => m.client === "late").map(brief), [
        ["will/victim", "gone", 1, true],
      ]);
      if (v === "5") {
        // Will properties are forwarded with the will message [MQTT-3.1.3-10 v5].
        const will = msgs.find((m) => m.client === "w")!;
        assert.equal(will.props.ContentType, "text/plain");
        assert.deepEqual(will.props.UserProperty, [["why", "dropped"]]);
      }
    } finally {
      await tb.stop();
    }
  });
}

test("paho MQTTv5: properties, subscription identifiers, No Local, request/response and an assigned client id [MQTT-3.3.2-17..20][MQTT-3.8.3-3 v5]", async () => {
  const tb = await startBroker();
  try {
    const lines = await python(
      tb,
      "5",
      `
anon = C("")
out("anon", **anon.connack)
anon.close()

responder = C("paho-responder")
def answer(cl, u, m):
    rp = Properties(PacketTypes.PUBLISH)
    rp.CorrelationData = m.properties.CorrelationData
    cl.publish(m.properties.ResponseTopic, b"answer to " + m.payload, 1, properties=rp)
responder.c.message_callback_add("svc/req", answer)
responder.sub("svc/req", 1)

req = C("paho-requester")
sp = Properties(PacketTypes.SUBSCRIBE)
sp.SubscriptionIdentifier = 7
req.c.subscribe("svc/resp/#", options=SubscribeOptions(qos=1), properties=sp)
wait(lambda: len(req.subacks) == 1, "SUBACK")
out("suback", granted=req.subacks[0])
out("suback", granted=req.sub("mine", 1, noLocal=True))

pp = Properties(PacketTypes.PUBLISH)
pp.ResponseTopic = "svc/resp/1"
pp.CorrelationData = b"id-42"
pp.UserProperty = [("a", "1"), ("b", "2"), ("a", "3")]
pp.ContentType = "text/plain"
pp.PayloadFormatIndicator = 1
pp.MessageExpiryInterval = 600
req.pub("mine", "not for me", 1)
req.pub("svc/req", "question", 1, props=pp)
req.wait_msgs(1)
req.report("req")

watcher = C("paho-watcher")
watcher.sub("svc/req", 1)
req.pub("svc/req", "again", 1, props=pp)
watcher.wait_msgs(1)
watcher.report("watcher")
for c in (responder, req, watcher):
    c.close()
`,
    );
    const [anon] = of(lines, "anon");
    assert.equal(anon.rc, 0);
    // [MQTT-3.2.2-16 v5] the broker tells the client the id it assigned.
    assert.match(anon.props.AssignedClientIdentifier, /^auto-/);
    assert.deepEqual(of(lines, "suback").map((l) => l.granted), [[1], [1]]);
    const msgs = of(lines, "msg");
    // No Local: "not for me" never came back; the answer carries the correlation data and the
    // subscription identifier of the matching subscription.
    const req = msgs.filter((m) => m.client === "req");
    assert.deepEqual(req.map(brief), [["svc/resp/1", "answer to question", 1, false]]);
    assert.equal(req[0].props.CorrelationData, hex("id-42"));
    assert.deepEqual(req[0].props.SubscriptionIdentifier, [7]);
    // Every forwarded property arrives unchanged, user properties in order [MQTT-3.3.2-18 v5].
    const [w] = msgs.filter((m) => m.client === "watcher");
    assert.deepEqual(brief(w), ["svc/req", "again", 1, false]);
    assert.equal(w.props.ResponseTopic, "svc/resp/1");
    assert.equal(w.props.CorrelationData, hex("id-42"));
    assert.equal(w.props.ContentType, "text/plain");
    assert.equal(w.props.PayloadFormatIndicator, 1);
    assert.deepEqual(w.props.UserProperty, [["a", "1"], ["b", "2"], ["a", "3"]]);
    assert.ok(w.props.MessageExpiryInterval > 0 && w.props.MessageExpiryInterval <= 600);
  } finally {
    await tb.stop();
  }
});
