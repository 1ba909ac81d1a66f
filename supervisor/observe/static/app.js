// The dashboard: GET /api/state every POLL_MS, drawn with the DOM (text only: nothing from
// the journal is ever parsed as HTML) and SVG charts of our own. A static export
// (report --html) carries its state in <script id="state"> and draws it once, without
// controls. Controls POST /api/<action> with the token the trader types once; it is kept
// in sessionStorage (this tab only), never in the page. A bot bound beyond loopback
// (monitoring.bind) answers /api/state only with that token too: the page asks for it
// before it shows anything (a 401), and polls again once it is given.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "ibkr-bot-control-token";
const ZONE = "America/New_York"; // the exchange's clock: the journal's days are its days
let pending = null; // the control waiting for a token
let polling = true; // a poll loop runs; false: stopped until a token is given (a 401)

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

const isNum = (x) => typeof x === "number" && isFinite(x);
const fixed = (x, d = 2) => (isNum(x) ? x.toFixed(d) : "–");
function money(x) {
  if (!isNum(x)) return "–";
  const sign = x < 0 ? "-" : "";
  return sign + "$" + Math.abs(x).toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
}
const pnlClass = (x) => (isNum(x) && x > 0 ? "num up" : isNum(x) && x < 0 ? "num down" : "num");
function clock(ts) {
  if (!isNum(ts)) return "–";
  return new Date(ts * 1000).toLocaleTimeString("en-GB", {timeZone: ZONE, hour12: false});
}
function when(ts) {
  if (!isNum(ts)) return "–";
  return new Date(ts * 1000).toLocaleString("en-GB", {timeZone: ZONE, hour12: false,
    weekday: "short", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit"}) + " ET";
}

function fill(tbody, rows, columns, empty) {
  tbody.replaceChildren();
  if (!rows.length) {
    tbody.append(el("tr", {class: "empty"}, el("td", {colspan: columns}, empty)));
    return;
  }
  for (const row of rows) tbody.append(row);
}

function badge(text, kind, id) {
  return el("span", {class: "badge " + (kind || ""), id: id}, text);
}

function renderBadges(state) {
  const live = state.live;
  const day = state.day;
  const box = document.getElementById("badges");
  box.replaceChildren();
  if (live) {
    box.append(badge(live.connected ? "connected" : "disconnected", live.connected ? "ok" : "bad", "b-connection"));
    box.append(badge(live.state, "", "b-state"));
    box.append(live.market_open
      ? badge("market open", "ok", "b-market")
      : badge("market closed" + (live.next_open_ts ? " · opens " + when(live.next_open_ts) : ""), "warn", "b-market"));
  } else {
    box.append(badge("export of the journal", "", "b-state"));
  }
  const halted = live ? live.kill_switch : day && day.summary.kill_switch.halted;
  const reason = live ? live.kill_switch_reason : day && day.summary.kill_switch.reason;
  if (halted) box.append(badge("KILL SWITCH: " + (reason || "tripped"), "bad", "b-kill"));
  const paused = live ? live.paused : day && day.paused;
  box.append(paused ? badge("PAUSED: no new entries", "bad", "b-paused") : badge("entries allowed", "ok", "b-paused"));
}

function card(key, value, id) {
  return el("div", {class: "card", id: id}, el("div", {class: "k"}, key), el("div", {class: "v"}, value));
}

function renderFigures(state) {
  const live = state.live;
  const s = state.day ? state.day.summary : null;
  const cards = [];
  if (live) {
    cards.push(card("session clock", clock(live.session_ts) + " ET", "f-clock"));
    cards.push(card("cycles", String(live.cycles), "f-cycles"));
    cards.push(card("last cycle", isNum(live.cycle_seconds) ? live.cycle_seconds.toFixed(2) + " s" : "–", "f-cycle-s"));
    cards.push(card("symbols ok / failed / skipped", `${live.symbols_ok} / ${live.symbols_failed} / ${live.symbols_skipped}`, "f-symbols"));
    cards.push(card("open positions", String(live.open_positions), "f-open"));
  } else if (s) {
    cards.push(card("cycles", String(s.cycles.count), "f-cycles"));
  }
  if (s) {
    cards.push(card("P&L today", money(s.pnl.total), "f-pnl"));
    cards.push(card("realized / unrealized", money(s.pnl.realized) + " / " + money(s.pnl.unrealized), "f-pnl-parts"));
    cards.push(card("intents accepted / refused", `${s.decisions.accepted} / ${s.decisions.refused}`, "f-decisions"));
  } else if (live) {
    cards.push(card("P&L today", money(live.day_pnl), "f-pnl"));
  }
  document.getElementById("figures").replaceChildren(...cards);
}

function priceAt(points, ts) {
  let best = null;
  for (const [t, p] of points) {
    if (best === null || Math.abs(t - ts) < Math.abs(best[0] - ts)) best = [t, p];
  }
  return best ? best[1] : null;
}

// One line chart: [[ts, value], ...] with optional marks [ts, kind, label] on the line.
function lineChart(points, opts) {
  const w = opts.width, h = opts.height, pad = opts.pad || 4, left = opts.left || pad;
  const root = svg("svg", {viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img",
    "aria-label": opts.label});
  if (!points.length) {
    const t = svg("text", {x: left, y: h / 2});
    t.textContent = "no data yet";
    root.append(t);
    return root;
  }
  const ts = points.map((p) => p[0]);
  const vs = points.map((p) => p[1]);
  let t0 = Math.min(...ts), t1 = Math.max(...ts);
  let v0 = Math.min(...vs), v1 = Math.max(...vs);
  if (t1 === t0) { t0 -= 30; t1 += 30; }
  if (v1 === v0) { const d = Math.abs(v0) * 0.001 || 1; v0 -= d; v1 += d; }
  // a mark after the last point (its cycle's prices not journaled yet) sits at the end
  const x = (t) => left + (Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0) * (w - left - pad);
  const y = (v) => pad + (1 - (v - v0) / (v1 - v0)) * (h - 2 * pad - (opts.axis ? 12 : 0));
  if (opts.axis) {
    for (const v of [v0, v1]) {
      root.append(svg("line", {class: "grid", x1: left, x2: w - pad, y1: y(v), y2: y(v)}));
      const label = svg("text", {x: 2, y: y(v) + 3});
      label.textContent = opts.format(v);
      root.append(label);
    }
    for (const t of [t0, t1]) {
      const label = svg("text", {x: Math.min(x(t), w - 48), y: h - 2});
      label.textContent = clock(t).slice(0, 5);
      root.append(label);
    }
  }
  const d = points.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join(" ");
  root.append(svg("path", {class: opts.cls, d: d}));
  if (points.length === 1) root.append(svg("circle", {class: opts.cls, cx: x(points[0][0]), cy: y(points[0][1]), r: 2}));
  for (const [t, kind, label] of opts.marks || []) {
    const v = priceAt(points, t);
    if (v === null) continue;
    const cx = x(t), cy = y(v);
    const shape = kind === "exit"
      ? svg("rect", {class: "exit", x: cx - 4, y: cy - 4, width: 8, height: 8})
      : svg("polygon", {class: kind === "order" ? "order" : "entry", points: `${cx},${cy - 6} ${cx - 5},${cy + 4} ${cx + 5},${cy + 4}`});
    const title = svg("title", {});
    title.textContent = label;
    shape.append(title);
    root.append(shape);
  }
  return root;
}

function renderSymbols(day, live) {
  const tbody = document.querySelector("#symbols tbody");
  const seen = new Set((day ? day.symbols : []).map((s) => s.symbol));
  // the universe's symbols no cycle of the day decided yet (live only: an export has none)
  const waiting = (live ? live.universe || [] : []).filter((u) => !seen.has(u))
    .map((u) => el("tr", {"data-symbol": u}, el("td", {}, el("b", {}, u)), el("td", {class: "num"}, "–"),
      el("td", {}, "–"), el("td", {}, ""), el("td", {class: "muted"}, "not in a cycle today yet"), el("td", {})));
  const rows = (day ? day.symbols : []).map((s) => {
    const d = s.decision;
    const decision = s.error ? "error: " + s.error
      : s.skipped ? "skipped: " + s.skipped
      : d ? (d.accepted ? `accepted ${d.quantity}` : `refused: ${d.rule}`) : "no intent";
    const marks = day.marks.filter((m) => m[1] === s.symbol)
      .map((m) => [m[0], m[2], `${m[2]} ${m[4]} @ ${fixed(m[3])}${m[5] ? " (" + m[5] + ")" : ""}`]);
    const chart = lineChart(day.series[s.symbol] || [], {width: 260, height: 54, cls: "price",
      marks: marks, label: s.symbol + " price today"});
    return el("tr", {"data-symbol": s.symbol},
      el("td", {}, el("b", {}, s.symbol)),
      el("td", {class: "num"}, fixed(s.price)),
      el("td", {class: "sig-" + s.signal}, s.signal),
      el("td", {class: "num"}, fixed(s.confidence)),
      el("td", {title: d ? d.reason : ""}, decision),
      el("td", {}, chart));
  });
  fill(tbody, rows.concat(waiting), 6, "no cycle journaled yet");
}

function orderText(o) {
  let details = o.details;
  try {
    const parsed = JSON.parse(o.details);
    details = Object.entries(parsed).map(([k, v]) => `${k} ${v}`).join(", ");
  } catch (e) { /* plain text */ }
  return `${o.mode} ${o.status}${o.order_id ? " #" + o.order_id : ""}: ${details}`;
}

function renderPositions(day) {
  const tbody = document.querySelector("#positions tbody");
  const s = day ? day.summary : null;
  const all = s ? s.positions.open.concat(s.positions.closed) : [];
  const rows = all.map((p) => el("tr", {"data-intent": p.intent_id},
    el("td", {}, p.symbol),
    el("td", {}, p.contract),
    el("td", {}, p.status + (p.exit_reason ? " (" + p.exit_reason + ")" : "")),
    el("td", {class: "num"}, String(p.held || p.quantity)),
    el("td", {class: "num"}, fixed(isNum(p.entry_price) ? p.entry_price : p.entry_limit)),
    el("td", {class: "num"}, fixed(isNum(p.exit_price) ? p.exit_price : p.mark)),
    el("td", {class: "num"}, fixed(p.take_profit)),
    el("td", {class: "num"}, fixed(p.stop_loss)),
    el("td", {class: pnlClass(p.pnl)}, money(p.pnl)),
    el("td", {}, (day.brackets[p.intent_id] || []).map((o) => el("div", {}, orderText(o))))));
  fill(tbody, rows, 10, "no position today");
  document.getElementById("pnl").textContent = s
    ? `P&L ${money(s.pnl.total)} (realized ${money(s.pnl.realized)}, open ${money(s.pnl.unrealized)})` : "";
}

function renderWorking(day) {
  const tbody = document.querySelector("#working tbody");
  const rows = (day ? day.working : []).map((o) => el("tr", {},
    el("td", {}, o.symbol), el("td", {}, o.contract), el("td", {}, o.mode), el("td", {}, o.status),
    el("td", {class: "num"}, String(o.quantity)), el("td", {}, o.order_id ? "#" + o.order_id : ""),
    el("td", {}, orderText({...o, mode: "", status: "", order_id: null}).replace(/^ : /, ""))));
  fill(tbody, rows, 7, "nothing working");
}

// The journal's curve (the start equity plus what was realized by each cycle) and, while the
// bot runs, its published P&L (marked) from the first point it kept on.
function equityPoints(day, live) {
  if (!day) return [];
  const start = day.summary.kill_switch.start_equity;
  const first = day.summary.cycles.first_ts;
  if (!live || !isNum(start) || !isNum(first)) return day.equity;
  const trail = (live.pnl_trail || []).filter((p) => p[0] >= first).map((p) => [p[0], start + p[1]]);
  if (!trail.length) return day.equity;
  return day.equity.filter((p) => p[0] < trail[0][0]).concat(trail);
}

function renderEquity(day, live) {
  const box = document.getElementById("equity");
  const width = Math.max(280, Math.min(box.clientWidth || 560, 900));
  box.replaceChildren(lineChart(equityPoints(day, live), {width: width, height: 160, cls: "equity",
    axis: true, left: 70, pad: 6, format: money, label: "equity today"}));
}

function kv(pairs) {
  return el("div", {class: "kv"}, pairs.map(([k, v]) => [el("span", {class: "muted"}, k), el("span", {}, v)]));
}

function renderCounts(day) {
  const box = document.getElementById("counts");
  if (!day) { box.replaceChildren("no cycle journaled yet"); return; }
  const s = day.summary;
  const kinds = Object.entries(s.signals.by_kind).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
  const rules = Object.entries(s.decisions.refused_by_rule).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
  box.replaceChildren(kv([
    ["signals", kinds],
    ["skipped / errors", `${s.signals.skipped} / ${s.signals.errors}`],
    ["intents", String(s.intents.recorded)],
    ["accepted", `${s.decisions.accepted} (${s.decisions.contracts} contracts)`],
    ["refused by rule", rules],
    ["fills", `${s.fills.count} (commission ${money(s.fills.commission)})`],
  ]));
  box.firstChild.id = "refusals";
}

function renderDecisions(day) {
  const tbody = document.querySelector("#decisions tbody");
  const rows = (day ? day.decisions : []).map((d) => el("tr", {},
    el("td", {}, clock(d.ts)), el("td", {}, d.symbol), el("td", {}, d.contract),
    el("td", {}, `${d.action} (${d.signal})`),
    el("td", {class: d.accepted ? "up" : "down"}, d.accepted ? "accepted" : d.rule),
    el("td", {class: "num"}, String(d.quantity)), el("td", {}, d.reason)));
  fill(tbody, rows, 7, "no decision today");
}

function renderSoak(live) {
  const box = document.getElementById("soak");
  if (!live) { box.replaceChildren("not recorded in the journal"); return; }
  const s = live.soak;
  const rss = Object.entries(s.rss_mb).map(([k, v]) => `${k} ${fixed(v, 1)} MB`).join(", ");
  box.replaceChildren(kv([
    ["RSS", rss || "–"],
    ["market data lines in use", isNum(s.lines_in_use) ? String(s.lines_in_use) : "–"],
    ["messages / s", fixed(s.msg_per_s, 1)],
    ["messages sent", isNum(s.messages_sent_total) ? String(s.messages_sent_total) : "–"],
  ]));
}

function renderEvents(day) {
  const list = document.getElementById("events");
  const s = day ? day.summary : null;
  const items = [];
  for (const c of s ? s.controls || [] : []) {
    items.push(el("li", {}, `${clock(c.ts)} ${c.action} by ${c.source} from ${c.peer}: ${c.result}`));
  }
  for (const a of s ? s.alerts : []) items.push(el("li", {}, `${clock(a.ts)} ${a.kind}: ${a.text}`));
  list.replaceChildren(...(items.length ? items : [el("li", {class: "muted"}, "none")]));
}

function render(state) {
  const day = state.day;
  document.getElementById("day").textContent = day ? day.day : "";
  renderBadges(state);
  renderFigures(state);
  renderSymbols(day, state.live);
  renderPositions(day);
  renderWorking(day);
  renderEquity(day, state.live);
  renderCounts(day);
  renderDecisions(day);
  renderSoak(state.live);
  renderEvents(day);
  document.getElementById("footer").textContent = state.live
    ? "updated " + new Date().toLocaleTimeString() + " · every " + POLL_MS / 1000 + " s"
    : "exported from " + state.journal;
  document.body.dataset.ready = "1"; // the browser test waits for a first render
}

function authorization() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? {"Authorization": "Bearer " + token} : {};
}

// false: the state needs a token this tab does not have (asked for; polling stops)
async function refresh() {
  const box = document.getElementById("badges");
  try {
    const answer = await fetch("/api/state", {cache: "no-store", headers: authorization()});
    if (answer.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      box.replaceChildren(badge("the bot's state needs the control token", "bad", "b-token"));
      askToken(null, "this bot is reachable beyond its machine: its state needs the token");
      return false;
    }
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    render(await answer.json());
  } catch (err) {
    box.replaceChildren(badge("no answer from the bot: " + err.message, "bad", "b-connection"));
  }
  return true;
}

async function poll() {
  polling = await refresh();
  if (polling) setTimeout(poll, POLL_MS);
}

// --- controls -------------------------------------------------------------------------------

function askToken(action, note) {
  pending = action;
  document.getElementById("token-box").hidden = false;
  const input = document.getElementById("token-input");
  input.value = "";
  input.focus();
  document.getElementById("control-result").textContent = note || "";
}

async function control(action) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) { askToken(action, "a control needs the token"); return; }
  if ((action === "flatten" || action === "kill")
      && !window.confirm(action === "flatten"
        ? "Cancel the working entries, close every position and pause?"
        : "Trip the kill switch: no new entries for the rest of the day?")) return;
  const out = document.getElementById("control-result");
  out.textContent = action + "…";
  try {
    const answer = await fetch("/api/" + action, {method: "POST",
      headers: {"Authorization": "Bearer " + token, "X-Control-Source": "dashboard"}});
    const body = await answer.json().catch(() => ({}));
    if (answer.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      askToken(action, "token refused (401): type it again");
      return;
    }
    out.textContent = `${action}: ${body.result || body.error || "HTTP " + answer.status}`;
  } catch (err) {
    out.textContent = `${action} failed: ${err.message}`;
  }
  if (polling) refresh();
}

function wireControls() {
  for (const button of document.querySelectorAll("#controls button[data-action]")) {
    button.addEventListener("click", () => control(button.dataset.action));
  }
  document.getElementById("token-save").addEventListener("click", () => {
    const value = document.getElementById("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    document.getElementById("token-box").hidden = true;
    if (pending) { const action = pending; pending = null; control(action); }
    if (!polling) poll();
  });
  document.getElementById("token-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter") document.getElementById("token-save").click();
  });
  document.getElementById("token-cancel").addEventListener("click", () => {
    pending = null;
    document.getElementById("token-box").hidden = true;
  });
}

const embedded = document.getElementById("state");
if (embedded) {
  document.getElementById("controls").remove(); // an export steers nothing
  render(JSON.parse(embedded.textContent));
} else {
  wireControls();
  poll();
}
