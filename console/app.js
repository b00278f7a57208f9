// Midge web console: plain JavaScript, no framework. Every request goes to the listener that
// served this page (the Content-Security-Policy allows nothing else). Writes carry the session's
// CSRF token in the X-CSRF-Token header; the session itself is an HttpOnly cookie.
"use strict";
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  let csrf = "";
  let cleanup = [];

  /** Make an element: h("div", {class: "x", onclick: f}, child, "text", …). */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of kids.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  async function api(method, path, body) {
    const headers = {};
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try {
      data = await r.json();
    } catch { /* empty */ }
    if (r.status === 401 && path !== "/api/session") showSignIn();
    return { ok: r.ok, status: r.status, data };
  }

  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en"));
  function bytes(v) {
    const u = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (v >= 1024 && i < u.length - 1) (v /= 1024), i++;
    return `${v < 10 && i ? v.toFixed(1) : Math.round(v)} ${u[i]}`;
  }
  const rate = (v) => (v >= 100 ? Math.round(v).toLocaleString("en") : (Math.round(v * 10) / 10).toString());
  const time = (ms) => new Date(ms).toLocaleTimeString("en-GB");
  const b64bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

  /** A button that asks for a second click before acting. */
  function confirmButton(label, action, cls = "danger") {
    let armed = null;
    const b = h("button", {
      class: cls,
      onclick: async () => {
        if (!armed) {
          b.textContent = `Confirm: ${label.toLowerCase()}`;
          armed = setTimeout(() => {
            armed = null;
            b.textContent = label;
          }, 4000);
          return;
        }
        clearTimeout(armed);
        armed = null;
        b.disabled = true;
        await action();
      },
    }, label);
    return b;
  }

  function flash(text, bad) {
    const el = h("div", { class: `flash ${bad ? "bad" : ""}`, role: "status" }, text);
    document.body.append(el);
    setTimeout(() => el.remove(), 4000);
  }

  /** Payload preview: text, JSON (pretty) or hex. */
  function preview(payload, mode) {
    if (mode === "hex") {
      const lines = [];
      for (let i = 0; i < payload.length && i < 4096; i += 16) {
        const row = Array.from(payload.subarray(i, i + 16));
        const hex = row.map((b) => b.toString(16).padStart(2, "0")).join(" ");
        const asc = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
        lines.push(`${i.toString(16).padStart(6, "0")}  ${hex.padEnd(48)}  ${asc}`);
      }
      return lines.join("\n");
    }
    const text = new TextDecoder().decode(payload);
    if (mode === "json") {
      try {
        return JSON.stringify(JSON.parse(text), null, 2);
      } catch (e) {
        return `not JSON: ${e.message}`;
      }
    }
    return text;
  }

  function payloadView(payload) {
    const pre = h("pre", { class: "payload", "data-testid": "payload" });
    let mode = "text";
    try {
      JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
      mode = "json";
    } catch {
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(payload);
      } catch {
        mode = "hex";
      }
    }
    const tabs = h("div", { class: "tabs" });
    const show = (m) => {
      mode = m;
      pre.textContent = preview(payload, m);
      for (const b of tabs.children) b.classList.toggle("on", b.dataset.m === m);
    };
    for (const m of ["text", "json", "hex"]) {
      tabs.append(h("button", { "data-m": m, onclick: () => show(m) }, m.toUpperCase()));
    }
    show(mode);
    return h("div", {}, tabs, pre);
  }

  // ---------------------------------------------------------------- overview
  const SERIES_COLORS = ["#2f7ed8", "#e4572e", "#76b041", "#a05195"];

  function chart(el, title, labels, fmt) {
    const opts = {
      title,
      width: Math.max(300, el.clientWidth - 10),
      height: 200,
      series: [{}, ...labels.map((l, i) => ({
        label: l,
        stroke: SERIES_COLORS[i],
        width: 1.5,
        value: (_u, v) => (v === null ? "–" : fmt(v)),
      }))],
      axes: [{}, { values: (_u, vals) => vals.map(fmt), size: 60 }],
      scales: { x: { time: true } },
      legend: { live: true },
    };
    return new uPlot(opts, [[], ...labels.map(() => [])], el);
  }

  function overview(page) {
    const cards = h("div", { class: "cards" });
    const keys = [
      ["connected", "Clients connected"],
      ["sessions", "Sessions"],
      ["subscriptions", "Subscriptions"],
      ["retained", "Retained"],
      ["queued", "Queued"],
      ["inflight", "In flight"],
      ["dropped", "Dropped"],
      ["msgIn", "Msgs in/s"],
      ["msgOut", "Msgs out/s"],
      ["commitMs", "Commit ms"],
      ["lagMs", "Loop lag ms"],
    ];
    const vals = {};
    for (const [k, label] of keys) {
      vals[k] = h("div", { class: "v", "data-testid": `stat-${k}` }, "–");
      cards.append(h("div", { class: "card stat" }, vals[k], h("div", { class: "l" }, label)));
    }
    const info = h("p", { class: "muted" });
    const nodes = h("table", { class: "list" });
    const c1 = h("div", { class: "chart", id: "chart-msg" });
    const c2 = h("div", { class: "chart", id: "chart-bytes" });
    const c3 = h("div", { class: "chart", id: "chart-health" });
    page.append(
      h("h1", {}, "Overview"),
      info,
      cards,
      h("div", { class: "charts" }, c1, c2, c3),
      h("h2", {}, "Nodes"),
      nodes,
    );
    const charts = [
      [chart(c1, "Messages per second", ["in", "out"], rate), ["msgIn", "msgOut"], c1],
      [chart(c2, "Bytes per second", ["in", "out"], bytes), ["bytesIn", "bytesOut"], c2],
      [chart(c3, "Health", ["commit ms", "loop lag ms", "dropped/s"], rate), [
        "commitMs",
        "lagMs",
        "dropRate",
      ], c3],
    ];
    const data = { t: [] };
    let since = 0;
    const WINDOW = 15 * 60;
    async function poll() {
      const r = await api("GET", `/api/overview?since=${since}`);
      if (!r.ok) return;
      const o = r.data;
      info.textContent = `Midge ${o.version} · up ${Math.floor(o.uptime / 3600)} h ${
        Math.floor((o.uptime % 3600) / 60)
      } min · ${o.listeners.map((l) => `${l.protocol} ${l.host}:${l.port}`).join(", ")} · persistence ${
        o.persistence ? "on" : "off"
      }`;
      for (const [k] of keys) {
        const v = o.now[k];
        vals[k].textContent = ["msgIn", "msgOut", "commitMs", "lagMs"].includes(k) ? rate(v) : num(v);
      }
      const hist = o.history;
      for (const k of Object.keys(hist)) (data[k] ??= []).push(...hist[k]);
      if (hist.t.length) since = Math.round(hist.t[hist.t.length - 1] * 1000);
      const cut = data.t.findIndex((t) => t >= data.t[data.t.length - 1] - WINDOW);
      if (cut > 0) for (const k of Object.keys(data)) data[k].splice(0, cut);
      for (const [u, series, el] of charts) {
        u.setData([data.t, ...series.map((s) => data[s] || [])]);
        el.dataset.points = String(data.t.length);
        el.dataset.lastT = String(data.t[data.t.length - 1] ?? "");
        el.dataset.last = series.map((s) => (data[s] || []).at(-1) ?? 0).join(",");
      }
      nodes.replaceChildren(
        h("tr", {}, h("th", {}, "Node"), h("th", {}, "Version"), h("th", {}, "Clients"), h("th", {}, "Uptime")),
        ...o.nodes.map((n) =>
          h(
            "tr",
            {},
            h("td", {}, n.id + (n.self ? " (this node)" : "")),
            h("td", {}, n.version),
            h("td", {}, num(n.clients)),
            h("td", {}, `${Math.floor(n.uptime / 60)} min`),
          )
        ),
      );
    }
    poll();
    const t = setInterval(poll, 2000);
    const resize = () => {
      for (const [u, , el] of charts) u.setSize({ width: Math.max(300, el.clientWidth - 10), height: 200 });
    };
    addEventListener("resize", resize);
    cleanup.push(() => {
      clearInterval(t);
      removeEventListener("resize", resize);
      for (const [u] of charts) u.destroy();
    });
  }

  // ---------------------------------------------------------------- clients
  function clients(page) {
    const PAGE = 50;
    let offset = 0;
    const search = h("input", { type: "search", placeholder: "client id, user or address", id: "client-search" });
    const state = h("select", {}, h("option", { value: "" }, "all"), h("option", { value: "connected" }, "connected"), h("option", { value: "offline" }, "offline"));
    const table = h("table", { class: "list", id: "clients-table" });
    const pager = h("div", { class: "pager" });
    const detail = h("div", { class: "detail", id: "client-detail" });
    page.append(h("h1", {}, "Clients"), h("div", { class: "bar" }, search, state), table, pager, detail);
    async function load() {
      const q = new URLSearchParams({ limit: PAGE, offset, search: search.value, state: state.value });
      const r = await api("GET", `/api/clients?${q}`);
      if (!r.ok) return;
      const d = r.data;
      table.replaceChildren(
        h("tr", {}, ...["Client id", "State", "Address", "User", "Proto", "Subs", "Queued", "In flight"].map((t) => h("th", {}, t))),
        ...d.clients.map((c) =>
          h(
            "tr",
            { class: "click", "data-id": c.id, onclick: () => show(c.id) },
            h("td", {}, c.id),
            h("td", {}, h("span", { class: c.connected ? "on" : "off" }, c.connected ? "connected" : "offline")),
            h("td", {}, c.address ?? ""),
            h("td", {}, c.username ?? ""),
            h("td", {}, c.protocol_version === 5 ? "5" : c.protocol_version === 4 ? "3.1.1" : "3.1"),
            h("td", {}, num(c.subscriptions)),
            h("td", {}, num(c.queued)),
            h("td", {}, num(c.inflight)),
          )
        ),
      );
      const last = Math.min(d.total, offset + d.count);
      pager.replaceChildren(
        h("button", { disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "‹ Previous"),
        h("span", {}, d.total ? `${num(offset + 1)}–${num(last)} of ${num(d.total)}` : "no clients"),
        h("button", { disabled: last >= d.total, onclick: () => { offset += PAGE; load(); } }, "Next ›"),
      );
    }
    async function show(id) {
      const r = await api("GET", `/api/clients/${encodeURIComponent(id)}`);
      if (!r.ok) {
        detail.replaceChildren(h("p", { class: "error" }, r.data?.error ?? "not found"));
        return;
      }
      const c = r.data;
      const row = (k, v) => h("tr", {}, h("th", {}, k), h("td", {}, v ?? "–"));
      const actions = h("div", { class: "actions" });
      if (c.connected) {
        actions.append(confirmButton("Kick", async () => {
          const k = await api("POST", `/api/clients/${encodeURIComponent(id)}/kick`);
          flash(k.ok ? `${id} disconnected` : k.data?.error, !k.ok);
          setTimeout(() => { load(); show(id); }, 300);
        }));
      } else {
        actions.append(confirmButton("Delete session", async () => {
          const k = await api("DELETE", `/api/clients/${encodeURIComponent(id)}`);
          flash(k.ok ? `session ${id} deleted` : k.data?.error, !k.ok);
          detail.replaceChildren();
          load();
        }));
      }
      detail.replaceChildren(
        h("h2", {}, c.id),
        actions,
        h("table", { class: "kv" },
          row("State", c.connected ? `connected since ${c.connected_since}` : `offline since ${c.disconnected_at ?? "–"}`),
          row("Address", c.address),
          row("Listener", c.listener),
          row("Protocol", `MQTT ${c.protocol_version === 5 ? "5.0" : c.protocol_version === 4 ? "3.1.1" : "3.1"} (${c.transport ?? "–"})`),
          row("User", c.username),
          row("TLS", c.tls === null ? null : c.tls ? "yes" : "no"),
          row("Keep-alive", c.keepalive === null ? null : `${c.keepalive} s`),
          row("Session expiry", c.session_expiry === "never" ? "never" : `${c.session_expiry} s`),
          row("Queued", `${num(c.queued)} (${bytes(c.queued_bytes)})`),
          row("In flight", num(c.inflight)),
          row("Dropped", num(c.dropped)),
        ),
        h("h3", {}, `Subscriptions (${c.subscription_list.length})`),
        h("table", { class: "list" },
          h("tr", {}, h("th", {}, "Filter"), h("th", {}, "QoS"), h("th", {}, "Options")),
          ...c.subscription_list.map((s) => h("tr", {}, h("td", {}, s.filter), h("td", {}, s.qos),
            h("td", {}, [s.no_local && "no local", s.retain_as_published && "retain as published", s.subscription_identifier && `id ${s.subscription_identifier}`].filter(Boolean).join(", ")))),
        ),
        h("h3", {}, `In flight (${c.inflight})`),
        h("table", { class: "list" }, ...c.inflight_list.map((m) => h("tr", {}, h("td", {}, m.packet_id), h("td", {}, m.topic), h("td", {}, `QoS ${m.qos}`), h("td", {}, bytes(m.bytes)), h("td", {}, m.state)))),
        h("h3", {}, `Queue (${c.queued})`),
        h("table", { class: "list" }, ...c.queue_list.map((m) => h("tr", {}, h("td", {}, m.topic), h("td", {}, `QoS ${m.qos}`), h("td", {}, bytes(m.bytes))))),
      );
    }
    let debounce;
    search.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => { offset = 0; load(); }, 250);
    });
    state.addEventListener("change", () => { offset = 0; load(); });
    load();
    const t = setInterval(load, 5000);
    cleanup.push(() => clearInterval(t));
  }

  // ---------------------------------------------------------------- topics
  function topics(page) {
    let prefix = "";
    const crumbs = h("div", { class: "crumbs" });
    const tree = h("table", { class: "list", id: "topic-tree" });
    const note = h("p", { class: "muted" });
    const filter = h("input", { id: "retained-filter", value: "#", placeholder: "topic filter" });
    const rlist = h("table", { class: "list", id: "retained-list" });
    const rview = h("div", { class: "detail", id: "retained-view" });
    page.append(
      h("h1", {}, "Topics"),
      h("div", { class: "cols" },
        h("section", {}, h("h2", {}, "Topic tree"), crumbs, tree, note),
        h("section", {}, h("h2", {}, "Retained messages"),
          h("form", { class: "bar", onsubmit: (e) => { e.preventDefault(); loadRetained(); } }, filter, h("button", {}, "Show")),
          rlist, rview),
      ),
    );
    async function loadTree() {
      const r = await api("GET", `/api/topics?prefix=${encodeURIComponent(prefix)}`);
      if (!r.ok) return;
      const d = r.data;
      const parts = prefix === "" ? [] : prefix.split("/");
      crumbs.replaceChildren(
        h("a", { href: "#topics", onclick: (e) => { e.preventDefault(); prefix = ""; loadTree(); } }, "(top)"),
        ...parts.flatMap((p, i) => [" / ", h("a", { href: "#topics", onclick: (e) => { e.preventDefault(); prefix = parts.slice(0, i + 1).join("/"); loadTree(); } }, p || "(empty)")]),
      );
      tree.replaceChildren(
        h("tr", {}, ...["Level", "Topics", "Messages", "Msgs/s", "Retained"].map((t) => h("th", {}, t))),
        ...d.nodes.map((n) =>
          h("tr", { class: n.children ? "click" : "", "data-topic": n.topic, onclick: () => { if (n.children) { prefix = n.topic; loadTree(); } } },
            h("td", {}, (n.children ? "▸ " : "  ") + (n.name || "(empty)")),
            h("td", {}, num(n.topics)),
            h("td", {}, num(n.messages)),
            h("td", {}, rate(n.rate)),
            h("td", {}, num(n.retained)),
          )
        ),
      );
      note.textContent = `Counting since ${d.tracking_since ? time(d.tracking_since) : "now"}${
        d.untracked ? ` · ${num(d.untracked)} messages on topics beyond the tracked limit` : ""
      }${d.total > d.nodes.length ? ` · showing ${d.nodes.length} of ${d.total}` : ""}`;
    }
    async function loadRetained() {
      const r = await api("GET", `/api/retained?limit=200&filter=${encodeURIComponent(filter.value || "#")}`);
      if (!r.ok) {
        rlist.replaceChildren(h("tr", {}, h("td", { class: "error" }, r.data?.error ?? "error")));
        return;
      }
      rlist.replaceChildren(
        h("tr", {}, h("th", {}, "Topic"), h("th", {}, "Size"), h("th", {}, "QoS")),
        ...r.data.messages.map((m) =>
          h("tr", { class: "click", "data-topic": m.topic, onclick: () => showRetained(m.topic) },
            h("td", {}, m.topic), h("td", {}, bytes(m.bytes)), h("td", {}, m.qos))
        ),
        ...(r.data.truncated ? [h("tr", {}, h("td", { class: "muted" }, `… ${num(r.data.total)} in all`))] : []),
      );
    }
    async function showRetained(topic) {
      const r = await api("GET", `/api/retained/message?topic=${encodeURIComponent(topic)}`);
      if (!r.ok) {
        rview.replaceChildren(h("p", { class: "error" }, r.data?.error ?? "gone"));
        return;
      }
      const m = r.data;
      rview.replaceChildren(
        h("h3", {}, m.topic),
        h("p", { class: "muted" }, `${bytes(m.bytes)} · QoS ${m.qos}${m.expires_in !== null ? ` · expires in ${m.expires_in} s` : ""}${m.truncated ? " · preview of the first 64 KB" : ""}${m.properties?.contentType ? ` · ${m.properties.contentType}` : ""}`),
        payloadView(b64bytes(m.payload)),
        h("div", { class: "actions" }, confirmButton("Delete", async () => {
          const d = await api("DELETE", `/api/retained?topic=${encodeURIComponent(topic)}`);
          flash(d.ok ? `retained message on ${topic} deleted` : d.data?.error, !d.ok);
          rview.replaceChildren();
          loadRetained();
          loadTree();
        })),
      );
    }
    loadTree();
    loadRetained();
    const t = setInterval(loadTree, 5000);
    cleanup.push(() => clearInterval(t));
  }

  // ---------------------------------------------------------------- live messages
  function messages(page) {
    const MAX = 500;
    const filter = h("input", { id: "sub-filter", value: "#", placeholder: "topic filter" });
    const status = h("span", { class: "muted", id: "sub-status" }, "not subscribed");
    const list = h("div", { class: "messages", id: "sub-messages" });
    let es = null;
    const subscribe = (e) => {
      e?.preventDefault();
      es?.close();
      list.replaceChildren();
      es = new EventSource(`/api/messages/stream?filter=${encodeURIComponent(filter.value)}`);
      es.onopen = () => (status.textContent = `subscribed to ${filter.value}`);
      es.onerror = () => (status.textContent = "stream interrupted; retrying");
      es.addEventListener("dropped", (ev) => list.prepend(h("div", { class: "msg muted" }, `${ev.data} messages dropped (too many to show)`)));
      es.addEventListener("message", (ev) => {
        const m = JSON.parse(ev.data);
        const payload = b64bytes(m.payload);
        let text;
        try {
          text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
        } catch {
          text = preview(payload, "hex").split("\n")[0] + " …";
        }
        const props = m.properties ? Object.entries(m.properties).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ") : "";
        list.prepend(h("div", { class: "msg", "data-topic": m.topic },
          h("span", { class: "t" }, time(m.time)),
          h("span", { class: "topic" }, m.topic),
          h("span", { class: "meta" }, `QoS ${m.qos}${m.retain ? " · retained" : ""} · ${bytes(m.bytes)}${props ? " · " + props : ""}`),
          h("pre", {}, text),
        ));
        while (list.children.length > MAX) list.lastChild.remove();
      });
    };
    const stop = () => {
      es?.close();
      es = null;
      status.textContent = "not subscribed";
    };
    // Publish form.
    const f = {
      topic: h("input", { id: "pub-topic", placeholder: "topic", required: true }),
      payload: h("textarea", { id: "pub-payload", rows: 3, placeholder: "payload (UTF-8)" }),
      qos: h("select", { id: "pub-qos" }, h("option", {}, "0"), h("option", {}, "1"), h("option", {}, "2")),
      retain: h("input", { type: "checkbox", id: "pub-retain" }),
      contentType: h("input", { placeholder: "content type" }),
      responseTopic: h("input", { placeholder: "response topic" }),
      correlationData: h("input", { placeholder: "correlation data" }),
      expiry: h("input", { type: "number", min: 0, placeholder: "message expiry (s)" }),
      utf8: h("input", { type: "checkbox" }),
      user: h("textarea", { rows: 2, placeholder: "user properties, one name=value a line" }),
    };
    const publish = async (e) => {
      e.preventDefault();
      const userProperties = f.user.value.split("\n").filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]);
      const r = await api("POST", "/api/publish", {
        topic: f.topic.value,
        payload: f.payload.value,
        qos: Number(f.qos.value),
        retain: f.retain.checked,
        properties: {
          contentType: f.contentType.value || undefined,
          responseTopic: f.responseTopic.value || undefined,
          correlationData: f.correlationData.value || undefined,
          messageExpiryInterval: f.expiry.value ? Number(f.expiry.value) : undefined,
          payloadFormatIndicator: f.utf8.checked ? 1 : undefined,
          userProperties: userProperties.length ? userProperties : undefined,
        },
      });
      flash(r.ok ? `published to ${r.data.receivers} subscriber(s)` : r.data?.error, !r.ok);
    };
    page.append(
      h("h1", {}, "Messages"),
      h("div", { class: "cols" },
        h("section", {},
          h("h2", {}, "Subscribe"),
          h("form", { class: "bar", onsubmit: subscribe }, filter, h("button", { id: "sub-go" }, "Subscribe"), h("button", { type: "button", onclick: stop }, "Stop")),
          status,
          list,
        ),
        h("section", {},
          h("h2", {}, "Publish"),
          h("form", { class: "form", id: "pub-form", onsubmit: publish },
            f.topic, f.payload,
            h("div", { class: "bar" }, h("label", {}, "QoS ", f.qos), h("label", {}, f.retain, " retain")),
            h("details", {}, h("summary", {}, "MQTT 5 properties"),
              f.contentType, f.responseTopic, f.correlationData, f.expiry,
              h("label", {}, f.utf8, " payload is UTF-8 (format indicator 1)"), f.user),
            h("button", { id: "pub-go" }, "Publish"),
          ),
        ),
      ),
    );
    cleanup.push(() => es?.close());
  }

  // ---------------------------------------------------------------- security
  async function security(page) {
    page.append(h("h1", {}, "Security"));
    const r = await api("GET", "/api/security");
    if (!r.ok) return;
    const s = r.data;
    if (s.dynsec) return dynsec(page);
    page.append(h("p", { class: "muted" }, `Dynamic security is not loaded. allow_anonymous = ${s.allow_anonymous}. The files below are shown read-only; change them and send SIGHUP.`));
    if (s.password_file) {
      const p = s.password_file;
      page.append(h("h2", {}, `Password file ${p.path}`),
        p.error ? h("p", { class: "error" }, p.error) : h("table", { class: "list", id: "users" }, h("tr", {}, h("th", {}, `User (${p.users.length})`)), ...p.users.map((u) => h("tr", {}, h("td", {}, u)))));
    } else page.append(h("p", {}, "No password_file."));
    if (s.acl_file) {
      const a = s.acl_file;
      page.append(h("h2", {}, `ACL file ${a.path}`), a.error ? h("p", { class: "error" }, a.error) : h("pre", { class: "payload", id: "acl" }, a.text));
    } else page.append(h("p", {}, "No acl_file: no topic restrictions."));
  }

  /** Dynamic security: clients, groups and roles through its commands. */
  async function dynsec(page) {
    const run = async (...commands) => {
      const r = await api("POST", "/api/dynsec", { commands });
      if (!r.ok) {
        flash(r.data?.error ?? "failed", true);
        return null;
      }
      const bad = (r.data.responses || []).find((x) => x.error);
      if (bad) flash(`${bad.command}: ${bad.error}`, true);
      return r.data.responses || [];
    };
    const box = h("div", {});
    page.append(h("p", { class: "muted" }, "Dynamic security: changes apply at once."), box);
    async function load() {
      const res = await run({ command: "listClients", verbose: true }, { command: "listGroups", verbose: true }, { command: "listRoles", verbose: true });
      if (!res) return;
      const [c, g, ro] = res.map((x) => x.data || {});
      const input = (ph) => h("input", { placeholder: ph });
      const nc = [input("user name"), h("input", { type: "password", placeholder: "password" })];
      const ng = input("group name");
      const nr = input("role name");
      const ra = [input("role"), input("ACL type, e.g. publishClientSend"), input("topic"), h("select", {}, h("option", {}, "allow"), h("option", {}, "deny"))];
      const cr = [input("client or group"), input("role")];
      const gc = [input("client"), input("group")];
      box.replaceChildren(
        h("h2", {}, "Clients"),
        h("table", { class: "list", id: "dynsec-clients" }, h("tr", {}, h("th", {}, "User"), h("th", {}, "Groups"), h("th", {}, "Roles"), h("th", {})),
          ...(c.clients || []).map((x) => h("tr", {}, h("td", {}, x.username), h("td", {}, (x.groups || []).map((y) => y.groupname).join(", ")), h("td", {}, (x.roles || []).map((y) => y.rolename).join(", ")),
            h("td", {}, confirmButton("Delete", async () => { await run({ command: "deleteClient", username: x.username }); load(); }))))),
        h("form", { class: "bar", onsubmit: async (e) => { e.preventDefault(); await run({ command: "createClient", username: nc[0].value, password: nc[1].value }); load(); } }, ...nc, h("button", {}, "Create client")),
        h("form", { class: "bar", onsubmit: async (e) => { e.preventDefault(); const isGroup = (g.groups || []).some((x) => x.groupname === cr[0].value); await run(isGroup ? { command: "addGroupRole", groupname: cr[0].value, rolename: cr[1].value } : { command: "addClientRole", username: cr[0].value, rolename: cr[1].value }); load(); } }, ...cr, h("button", {}, "Add role")),
        h("form", { class: "bar", onsubmit: async (e) => { e.preventDefault(); await run({ command: "addGroupClient", username: gc[0].value, groupname: gc[1].value }); load(); } }, ...gc, h("button", {}, "Add to group")),
        h("h2", {}, "Groups"),
        h("table", { class: "list", id: "dynsec-groups" }, h("tr", {}, h("th", {}, "Group"), h("th", {}, "Clients"), h("th", {}, "Roles"), h("th", {})),
          ...(g.groups || []).map((x) => h("tr", {}, h("td", {}, x.groupname), h("td", {}, (x.clients || []).map((y) => y.username).join(", ")), h("td", {}, (x.roles || []).map((y) => y.rolename).join(", ")),
            h("td", {}, confirmButton("Delete", async () => { await run({ command: "deleteGroup", groupname: x.groupname }); load(); }))))),
        h("form", { class: "bar", onsubmit: async (e) => { e.preventDefault(); await run({ command: "createGroup", groupname: ng.value }); load(); } }, ng, h("button", {}, "Create group")),
        h("h2", {}, "Roles"),
        h("table", { class: "list", id: "dynsec-roles" }, h("tr", {}, h("th", {}, "Role"), h("th", {}, "ACLs"), h("th", {})),
          ...(ro.roles || []).map((x) => h("tr", {}, h("td", {}, x.rolename), h("td", {}, (x.acls || []).map((a) => `${a.allow ? "allow" : "deny"} ${a.acltype} ${a.topic}`).join("; ")),
            h("td", {}, confirmButton("Delete", async () => { await run({ command: "deleteRole", rolename: x.rolename }); load(); }))))),
        h("form", { class: "bar", onsubmit: async (e) => { e.preventDefault(); await run({ command: "createRole", rolename: nr.value }); load(); } }, nr, h("button", {}, "Create role")),
        h("form", { class: "bar", onsubmit: async (e) => { e.preventDefault(); await run({ command: "addRoleACL", rolename: ra[0].value, acltype: ra[1].value, topic: ra[2].value, allow: ra[3].value === "allow" }); load(); } }, ...ra, h("button", {}, "Add ACL")),
      );
    }
    load();
  }

  // ---------------------------------------------------------------- logs
  function logs(page) {
    const filter = h("input", { id: "log-filter", type: "search", placeholder: "client id or topic" });
    const types = ["error", "warning", "notice", "information", "subscribe", "unsubscribe", "websockets", "debug"];
    const boxes = types.map((t) => h("input", { type: "checkbox", checked: true, value: t }));
    const out = h("pre", { class: "log", id: "log-lines" });
    const follow = h("input", { type: "checkbox", checked: true });
    let since = 0;
    async function poll(reset) {
      if (reset) {
        since = 0;
        out.textContent = "";
      }
      const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
      const q = new URLSearchParams({ since, filter: filter.value, types: chosen.join(",") });
      const r = await api("GET", `/api/logs?${q}`);
      if (!r.ok) return;
      since = r.data.last;
      if (r.data.lines.length) {
        out.append(r.data.lines.map((l) => `${time(l.time)} ${l.type.padEnd(11)} ${l.text}\n`).join(""));
        const lines = out.textContent.split("\n");
        if (lines.length > 2000) out.textContent = lines.slice(-2000).join("\n");
        if (follow.checked) out.scrollTop = out.scrollHeight;
      }
    }
    let debounce;
    filter.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => poll(true), 250);
    });
    for (const b of boxes) b.addEventListener("change", () => poll(true));
    page.append(
      h("h1", {}, "Logs"),
      h("div", { class: "bar" }, filter, ...types.map((t, i) => h("label", {}, boxes[i], ` ${t}`)), h("label", {}, follow, " follow")),
      out,
    );
    poll(true);
    const t = setInterval(() => poll(false), 1000);
    cleanup.push(() => clearInterval(t));
  }

  // ---------------------------------------------------------------- shell
  const PAGES = { overview, clients, topics, messages, security, logs };

  function route() {
    for (const f of cleanup) f();
    cleanup = [];
    const name = location.hash.slice(1) || "overview";
    const page = $("#page");
    page.replaceChildren();
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("on", a.getAttribute("href") === `#${name}`);
    (PAGES[name] || overview)(page);
  }

  function showSignIn(passwords) {
    for (const f of cleanup) f();
    cleanup = [];
    csrf = "";
    $("#page").replaceChildren();
    $("#nav").hidden = true;
    $("#signout").hidden = true;
    $("#who").textContent = "";
    $("#signin").hidden = false;
    if (passwords !== undefined) $("#userpass").hidden = !passwords;
    $("#token").focus();
  }

  function signedIn(d) {
    csrf = d.csrf;
    $("#signin").hidden = true;
    $("#nav").hidden = false;
    $("#signout").hidden = false;
    $("#who").textContent = `signed in as ${d.who}`;
    route();
  }

  $("#signin").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("#token").value;
    const body = token ? { token } : { username: $("#username").value, password: $("#password").value };
    $("#signin-error").textContent = "";
    const r = await api("POST", "/api/session", body);
    $("#token").value = "";
    $("#password").value = "";
    if (r.ok) signedIn(r.data);
    else $("#signin-error").textContent = r.data?.error ?? `refused (${r.status})`;
  });
  $("#signout").addEventListener("click", async () => {
    await api("DELETE", "/api/session");
    showSignIn();
  });
  addEventListener("hashchange", () => {
    if (csrf) route();
  });

  (async () => {
    const r = await api("GET", "/api/session");
    if (r.ok) signedIn(r.data);
    else showSignIn(r.data?.password_sign_in ?? false);
  })();
})();
