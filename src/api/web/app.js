// pgherd dashboard: renders the snapshots the agent streams on /events (server-sent events) and
// sends token-protected actions to the same agent. Plain browser JavaScript (a module), no build step.
import { connBadge, DEFAULT_INTERVAL_MS, intervalOf } from "./live.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const LAG_WARN_BYTES = 16 * 1024 * 1024;
let last = null;

function el(tag, attrs = {}, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return "?";
  const u = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

function health(m) {
  if (m.role === "witness") return m.state === "unreachable" ? "bad" : "idle";
  if (m.state === "unreachable" || m.state === "stopped") return "bad";
  if (m.role === "primary" && m.state === "running") return "ok";
  if (m.role === "standby" && m.state === "streaming") return (m.lagBytes ?? 0) > LAG_WARN_BYTES ? "warn" : "ok";
  return "warn";
}

function lagText(m) {
  if (m.role !== "standby") return "";
  const s = m.lagSeconds === null || m.lagSeconds === undefined ? "" : ` / ${m.lagSeconds.toFixed(1)} s`;
  return `${bytes(m.lagBytes)}${s}`;
}

// ---------------------------------------------------------------- rendering

function render(snap) {
  last = snap;
  const node = snap.node;
  const view = snap.cluster.view;
  const members = view.members;
  $("cluster").textContent = view.cluster;
  const primary = members.find((m) => m.id === view.primary);
  $("sum-primary").textContent = primary ? `${primary.name} (timeline ${primary.timeline ?? "?"})` : "none";
  $("sum-leader").textContent = view.leaderName ? `${view.leaderName} (${view.term})` : `none (${view.term})`;
  $("sum-durability").textContent = node.durability
    ? String(node.durability)
    : "asynchronous: a failover may lose the last commits not yet on the new primary";
  $("sum-mode").textContent = node.paused ? "paused (no automatic actions)" : "automatic failover";
  renderHealth(node.postgres && node.postgres.health);
  $("sum-self").textContent = `${node.node.name}${snap.cluster.source === "local" ? " (leader unreachable: local view)" : ""}`;
  renderScheduled(view.scheduledSwitchover);
  renderTopology(members, view, node.node.id);
  renderMembers(members, view);
  renderTimeline(snap.history || []);
  renderActions(members, view, node);
}

// Whether this node's PostgreSQL can work (stuck, disk full, cannot write: with the reason and since when) and its disk space.
function renderHealth(h) {
  const bad = h && (h.state !== "ok" && h.state !== "unknown" || h.diskWarning);
  $("sum-health-row").hidden = !bad;
  if (!bad) return;
  const text = h.state !== "ok" && h.state !== "unknown" ? `${h.state}${h.since ? ` since ${new Date(h.since).toLocaleString()}` : ""}: ${h.reason}` : `disk space low: ${h.diskWarning}`;
  $("sum-health").textContent = text;
  $("sum-health").className = h.state === "busy" || h.state === "ok" || h.state === "unknown" ? "warn" : "bad";
}

// A switchover the leader stores and runs at its time (absent or null: none).
function renderScheduled(s) {
  $("sum-scheduled-row").hidden = !s;
  $("sum-scheduled").textContent = s ? `to ${s.to || "the most caught-up standby"} at ${new Date(s.at).toLocaleString()}` : "";
  $("sum-scheduled").title = s ? `${s.at} (requested ${s.requestedAt})` : "";
  $("btn-cancel-switchover").disabled = !s;
}

function renderTopology(members, view, selfId) {
  const svg = $("topology");
  svg.replaceChildren();
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(el("svg:path", { d: "M 0 0 L 10 5 L 0 10 z" }));
  defs.append(marker);
  svg.append(defs);
  const primary = members.find((m) => m.id === view.primary);
  const others = members.filter((m) => m !== primary);
  const W = 600;
  const pos = new Map();
  if (primary) pos.set(primary.id, { x: W / 2, y: 80 });
  others.forEach((m, i) => pos.set(m.id, { x: (W / (others.length + 1)) * (i + 1), y: primary ? 210 : 130 }));
  // Arrows first (under the nodes): WAL flows from the primary to each standby.
  if (primary) {
    for (const m of others.filter((x) => x.role === "standby")) {
      const a = pos.get(primary.id), b = pos.get(m.id);
      const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy), r = 32;
      const x1 = a.x + (dx / len) * r, y1 = a.y + (dy / len) * r, x2 = b.x - (dx / len) * (r + 4), y2 = b.y - (dy / len) * (r + 4);
      const cls = m.state !== "streaming" ? "link broken" : (m.lagBytes ?? 0) > LAG_WARN_BYTES ? "link slow" : "link";
      svg.append(el("svg:line", { class: cls, x1, y1, x2, y2, "marker-end": "url(#arrow)", "data-from": primary.name, "data-to": m.name }));
      // Label near the standby's end, clear of the primary's name.
      const lab = el("svg:text", { class: "lag", x: x1 + (x2 - x1) * 0.62 + (dx >= 0 ? 16 : -16), y: y1 + (y2 - y1) * 0.62, "data-lag-for": m.name },
        m.state === "streaming" ? lagText(m) : m.state);
      lab.setAttribute("text-anchor", dx >= 0 ? "start" : "end");
      svg.append(lab);
    }
  }
  for (const m of members) {
    const p = pos.get(m.id);
    const g = el("svg:g", { class: `node ${health(m)}${m.id === selfId ? " self" : ""}`, "data-node": m.name, "data-role": m.role, "data-state": m.state });
    g.append(el("svg:circle", { cx: p.x, cy: p.y, r: 30 }));
    if (m.leader) g.append(el("svg:text", { class: "star", x: p.x, y: p.y + 6 }, "★"));
    // The primary's labels go above it, the arrows leave below.
    const top = primary && m.id === primary.id;
    g.append(el("svg:text", { class: "name", x: p.x, y: top ? p.y - 54 : p.y + 48 }, m.name));
    g.append(el("svg:text", { x: p.x, y: top ? p.y - 38 : p.y + 64 }, `${m.role} · ${m.state}${m.pendingRestart?.length ? " · restart pending" : ""}`));
    const title = el("svg:title", {}, `${m.name}: ${m.role}, ${m.state}${m.note ? ` (${m.note})` : ""}${m.error ? `; error: ${m.error}` : ""}`);
    g.append(title);
    svg.append(g);
  }
}

function renderMembers(members, view) {
  const body = $("members").tBodies[0];
  body.replaceChildren();
  for (const m of members) {
    const tr = el("tr", { class: health(m), "data-node": m.name, "data-role": m.role });
    const name = `${m.name}${m.leader ? " ★" : ""}${m.voter ? "" : " (non-voter)"}`;
    const cells = [name, m.role, m.state, m.timeline ?? "", m.lsn ?? "", lagText(m), m.host ? `${m.host}:${m.port ?? "?"}` : "", [m.pendingRestart?.length ? `restart pending (${m.pendingRestart.join(", ")})` : "", m.promotable === false ? "never promoted" : "", m.note, m.error].filter(Boolean).join("; ")];
    cells.forEach((c, i) => tr.append(el("td", i === 7 ? { class: "note" } : {}, String(c))));
    body.append(tr);
  }
  void view;
}

function renderTimeline(history) {
  const ol = $("timeline");
  ol.replaceChildren();
  if (history.length === 0) ol.append(el("li", {}, "No role changes recorded yet."));
  for (const h of [...history].reverse().slice(0, 100)) {
    const li = el("li", { class: String(h.kind) });
    li.append(el("span", { class: "when" }, `${new Date(h.at).toLocaleString()} · term ${h.term}`));
    const change = h.newPrimary ? ` → primary ${h.newPrimary}${h.oldPrimary ? ` (was ${h.oldPrimary})` : ""}` : "";
    li.append(document.createTextNode(`${h.kind}${h.node ? ` on ${h.node}` : ""}${change}: ${h.reason}`));
    ol.append(li);
  }
}

function renderActions(members, view, node) {
  const sel = $("switchover-to");
  const keep = sel.value;
  // Never one that cannot be promoted (nofailover, priority 0): the leader refuses it.
  const opts = members.filter((m) => m.role === "standby" && m.promotable !== false).map((m) => m.name);
  const have = [...sel.options].slice(1).map((o) => o.value);
  if (opts.join() !== have.join()) {
    sel.replaceChildren(el("option", { value: "" }, "most caught-up standby"), ...opts.map((n) => el("option", { value: n }, n)));
    sel.value = opts.includes(keep) ? keep : "";
  }
  $("btn-switchover").disabled = !view.primary || opts.length === 0;
  $("btn-pause").disabled = !!node.paused;
  $("btn-resume").disabled = node.paused === false;
  $("btn-rejoin").textContent = `Rejoin ${node.node.name}`;
}

// ---------------------------------------------------------------- live updates

// What the badge is judged from (live.js): "live" only while snapshots keep coming at the agent's pace.
const conn = { startedAt: performance.now(), lastSnapshotAt: null, intervalMs: DEFAULT_INTERVAL_MS, stream: "connecting", renderError: null };

function connect() {
  const es = new EventSource("/events");
  es.addEventListener("open", () => { conn.stream = "open"; showConn(); });
  es.addEventListener("snapshot", (e) => {
    try {
      const snap = JSON.parse(e.data);
      render(snap);
      conn.intervalMs = intervalOf(snap);
      conn.lastSnapshotAt = performance.now();
      conn.renderError = null;
    } catch (err) {
      conn.renderError = String(err && err.message);
    }
    showConn();
  });
  es.addEventListener("error", () => { conn.stream = "error"; showConn(); });
  // A silent stream fires no event: the badge is judged again on a timer too.
  setInterval(showConn, 250);
}

function showConn() {
  const b = connBadge({ ...conn, now: performance.now() });
  const c = $("conn");
  if (c.textContent !== b.text) c.textContent = b.text;
  c.className = `badge ${b.cls}`;
  document.body.classList.toggle("stale", b.cls === "bad");
}

// ---------------------------------------------------------------- actions

let pending = null;

function ask(text, run) {
  pending = run;
  $("confirm-text").textContent = text;
  $("token").value = sessionStorage.getItem("pgherd-token") || "";
  $("confirm").showModal();
  $("token").focus();
}

async function send(method, path, body) {
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem("pgherd-token", token);
  const out = $("result");
  out.className = "muted";
  out.textContent = `${method} ${path}…`;
  try {
    const res = await fetch(path, {
      method, ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
    const j = await res.json().catch(() => ({}));
    if (res.status === 401 || res.status === 403) sessionStorage.removeItem("pgherd-token");
    out.className = res.ok ? "ok" : "bad";
    out.textContent = `${res.status}: ${j.message || j.error || res.statusText}`;
  } catch (err) {
    out.className = "bad";
    out.textContent = `request failed: ${err.message}`;
  }
}

function wire() {
  $("confirm-cancel").addEventListener("click", () => { pending = null; $("confirm").close(); });
  $("confirm-ok").addEventListener("click", () => {
    const run = pending;
    pending = null;
    $("confirm").close();
    if (run) void run();
  });
  $("token").addEventListener("keydown", (e) => { if (e.key === "Enter") $("confirm-ok").click(); });
  $("btn-switchover").addEventListener("click", () => {
    const to = $("switchover-to").value;
    const from = last && last.cluster.view.members.find((m) => m.id === last.cluster.view.primary);
    ask(`Switch the primary over from ${from ? from.name : "?"} to ${to || "the most caught-up standby"}? Writes pause for a moment.`,
      () => send("POST", "/switchover", to ? { to } : {}));
  });
  $("btn-cancel-switchover").addEventListener("click", () => {
    const s = last && last.cluster.view.scheduledSwitchover;
    ask(`Cancel the switchover scheduled for ${s ? new Date(s.at).toLocaleString() : "later"}?`, () => send("DELETE", "/switchover"));
  });
  $("btn-rejoin").addEventListener("click", () => {
    const name = last ? last.node.node.name : "this node";
    ask(`Rebuild ${name} as a standby of the primary (pg_rewind, else a fresh clone)?`, () => send("POST", "/rejoin", {}));
  });
  $("btn-pause").addEventListener("click", () => ask("Pause the cluster? Agents keep monitoring but take no automatic action (no failover).", () => send("POST", "/pause", {})));
  $("btn-resume").addEventListener("click", () => ask("Resume automatic actions (failover) in the cluster?", () => send("POST", "/resume", {})));
}

wire();
connect();
