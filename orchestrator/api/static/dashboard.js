// CryptIQ ops dashboard: logs in with the OAuth2 password flow, then polls the JSON API every 2 s.
// Data is written with textContent only (never innerHTML), so nothing from the API runs as markup.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "cryptiq.token";
const $ = (id) => document.getElementById(id);
let timer = null;
let selectedDecision = null;

// -- helpers --------------------------------------------------------------------------------------

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function badge(text, kind) {
  return el("span", text, "badge " + (kind || String(text).replace(/[^a-z_]/gi, "_")));
}

function row(cells, className) {
  const tr = el("tr", null, className);
  for (const cell of cells) {
    if (cell instanceof Node) { const td = el("td"); td.appendChild(cell); tr.appendChild(td); }
    else if (cell && typeof cell === "object") { tr.appendChild(el("td", cell.text, cell.cls)); }
    else tr.appendChild(el("td", cell));
  }
  return tr;
}

// Rows into a table body; a muted line instead when there are none, and past `limit` rows
// (a long backlog must not bury the rest of the page) the first `limit` and a count of the others.
function fill(tbody, rows, emptyText, columns, limit = Infinity) {
  const shown = rows.length > limit ? rows.slice(0, limit) : rows;
  if (rows.length > limit) shown.push(row([{ text: `and ${(rows.length - limit).toLocaleString()} more`, cls: "muted" }]));
  tbody.replaceChildren(...(shown.length ? shown : [row([{ text: emptyText, cls: "muted" }])]));
  if (!rows.length || rows.length > limit) tbody.lastChild.firstChild.colSpan = columns;
}

// Display only (the API keeps every digit): an amount to the cent, a quantity without "0E-8".
function money(value) {
  return value == null ? "-" : Number(value).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function quantity(value) {
  return value == null ? "-" : Number(value) === 0 ? "0" : String(value);
}

function time(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "-";
}

function age(seconds) {
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = Object.assign({}, options.headers || {}, token ? { Authorization: "Bearer " + token } : {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) { logout("session expired: log in again"); throw new Error("unauthorized"); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error(body.detail ? JSON.stringify(body.detail) : String(body));
  return body;
}

// -- login ----------------------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const form = new URLSearchParams({ username: $("username").value, password: $("password").value });
  const response = await fetch("/auth/token", { method: "POST", body: form });
  const body = await response.json();
  if (!response.ok) { $("login-error").textContent = body.detail || "login failed"; return; }
  sessionStorage.setItem(TOKEN_KEY, body.access_token);
  $("password").value = "";
  start();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(timer);
  timer = null;
  $("dashboard").hidden = true;
  $("session").hidden = true;
  $("login-panel").hidden = false;
  $("status").textContent = message || "not logged in";
}

async function start() {
  const me = await api("/me");
  $("who").textContent = me.name + " (" + me.role + ")";
  $("login-panel").hidden = true;
  $("dashboard").hidden = false;
  $("session").hidden = false;
  await refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

// -- panels ---------------------------------------------------------------------------------------

async function refresh() {
  try {
    const [state, agents, decisions, alerts, positions, risk] = await Promise.all([
      api("/state"), api("/agents"), api("/decisions?limit=25"), api("/alerts?limit=50"), api("/positions"),
      api("/risk"),
    ]);
    renderPositions(positions);
    renderBreakdowns(risk);
    renderAgents(agents);
    renderStreams(state);
    renderRisk(state);
    renderDecisions(decisions);
    renderAlerts(alerts);
    $("agents-as-of").textContent = state.stored ? "context as of " + time(state.context.as_of) : "no context stored yet";
    $("status").textContent = "live, updated " + new Date().toLocaleTimeString();
    if (selectedDecision) await showFlow(selectedDecision);
  } catch (error) {
    if (String(error.message) !== "unauthorized") $("status").textContent = "refresh failed: " + error.message;
  }
}

function renderAgents(agents) {
  const rows = agents.map((a) => row([
    a.agent,
    badge(a.stale ? "stale" : a.status, a.stale ? "stale" : a.status),
    { text: a.lag ?? "-", cls: "num" },
    { text: a.processed.toLocaleString(), cls: "num" },
    { text: a.dead_lettered, cls: "num" },
    { text: age(a.heartbeat_age_s), cls: "num" },
    { text: a.last_error || "", cls: "wrap error" },
  ]));
  fill($("agents").tBodies[0], rows, "no heartbeats yet", 7);
}

function renderStreams(state) {
  const streams = Object.values(state.context.streams);
  const rows = streams.map((s) => row([
    s.stream,
    s.regime ? badge(s.regime) : "-",
    time(s.regime_since),
    (s.strategy || "-") + (s.pinned ? " (pinned)" : ""),
    { text: JSON.stringify(s.params), cls: "wrap" },
    { text: quantity(s.position), cls: "num" },
    { text: s.open_intents.length, cls: "num" },
  ]));
  fill($("streams").tBodies[0], rows, "no streams yet", 7);
  const intents = streams.flatMap((s) => s.open_intents.map((i) => [s.stream, i]))
    .sort((a, b) => b[1].ts - a[1].ts)  // newest first
    .map(([stream, i]) => row([
      stream, { text: i.decision_id.slice(0, 18), cls: "muted" }, i.side, i.strategy, badge(i.status, "pending"), i.size ?? "-",
    ]));
  fill($("intents").tBodies[0], intents, "none", 6, 25);
}

function renderPositions(positions) {
  const held = positions.books ? Object.entries(positions.books.positions || {}) : [];
  const rows = held.map(([instrument, p]) => row([
    instrument, { text: quantity(p.quantity), cls: "num" }, { text: p.average_cost ?? "-", cls: "num" },
    { text: p.mark ?? "-", cls: "num" }, { text: money(p.realised_pnl), cls: "num" },
  ]));
  fill($("positions").tBodies[0], rows, "nothing traded yet", 5);
  $("positions-as-of").textContent = positions.as_of ? "ledger as of " + time(positions.as_of) : "";
}

function renderRisk(state) {
  const kill = state.kill_switch;
  $("kill-state").replaceChildren(kill
    ? badge(kill.engaged ? "engaged" : "released", kill.engaged ? "engaged" : "ok")
    : badge("released", "ok"));
  if (kill) $("kill-state").appendChild(el("span", " by " + kill.actor + ": " + kill.reason, "muted"));
  $("risk-mode").textContent = state.risk_mode ? state.risk_mode.mode : "normal";
}

// Ratios as the risk agent measures them: a share as a percentage, leverage as a multiple.
function percent(value) {
  return value == null ? "-" : (100 * value).toFixed(2) + " %";
}

function ratio(value, suffix = "") {
  return value == null ? "-" : Number(value).toFixed(2) + suffix;
}

function renderBreakdowns(breakdowns) {
  const rows = breakdowns.map((b) => row([
    b.portfolio, time(b.as_of), { text: money(b.equity), cls: "num" },
    { text: money(b.gross_exposure), cls: "num" }, { text: money(b.net_exposure), cls: "num" },
    { text: ratio(b.leverage, "x"), cls: "num" }, { text: percent(b.volatility), cls: "num" },
    { text: percent(b.liquidity), cls: "num" }, { text: ratio(b.concentration_hhi), cls: "num" },
    { text: percent(b.largest_share), cls: "num" }, { text: ratio(b.correlation), cls: "num" },
  ]));
  fill($("risk").tBodies[0], rows, "no breakdown yet", 11);
  const holdings = breakdowns.flatMap((b) => b.holdings.map((h) => row([
    b.portfolio, h.exchange + ":" + h.symbol, { text: money(h.notional), cls: "num" },
    { text: percent(h.weight), cls: "num" }, { text: percent(h.volatility), cls: "num" },
    { text: percent(h.liquidity), cls: "num" },
  ])));
  fill($("risk-holdings").tBodies[0], holdings, "no open positions", 6);
}

function renderDecisions(decisions) {
  const rows = decisions.map((d) => {
    const tr = row([time(d.ts), d.agent, d.symbol || "-", d.kind || "-", { text: d.reasons.join("; "), cls: "wrap" },
      { text: d.id.slice(0, 18), cls: "muted" }], "clickable" + (d.id === selectedDecision ? " selected" : ""));
    tr.dataset.id = d.id;
    tr.addEventListener("click", () => { selectedDecision = d.id; showFlow(d.id); });
    return tr;
  });
  fill($("decisions").tBodies[0], rows, "no decisions yet", 6);
}

async function showFlow(id) {
  const flow = await api("/decisions/" + encodeURIComponent(id));
  $("flow").hidden = false;
  $("flow-id").textContent = id;
  const open = new Set([...$("flow-steps").querySelectorAll("details[open]")].map((d) => d.dataset.stage));
  $("flow-steps").replaceChildren(...flow.steps.map((step) => {
    const li = el("li");
    li.dataset.stage = step.stage;
    li.append(el("div", step.stage + " · " + step.agent, "stage"), badge(step.status), el("p", step.summary));
    if (step.detail !== null && step.detail !== undefined) {
      const details = el("details");
      details.dataset.stage = step.stage;
      details.open = open.has(step.stage);
      details.append(el("summary", "detail"), el("pre", JSON.stringify(step.detail, null, 2)));
      li.appendChild(details);
    }
    return li;
  }));
}

function renderAlerts(alerts) {
  const items = alerts.map((a) => {
    const li = el("li");
    li.append(badge(a.severity), " ", el("span", time(a.ts), "muted"), " ", el("strong", a.name), " ",
      el("span", a.message), el("span", " (" + a.source + (a.symbol ? ", " + a.symbol : "") + ")", "muted"));
    return li;
  });
  $("alerts").replaceChildren(...(items.length ? items : [el("li", "no alerts", "muted")]));
}

// -- kill switch (operator + TOTP) ----------------------------------------------------------------

async function killSwitch(event) {
  event.preventDefault();
  const engaged = event.submitter ? event.submitter.dataset.engaged === "true" : true;
  const body = { engaged, reason: $("kill-reason").value, totp: $("kill-totp").value };
  try {
    const result = await api("/commands/kill-switch", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    $("kill-result").textContent = "sent " + result.event_id + " (audit #" + result.audit_id + ")";
    $("kill-totp").value = "";
  } catch (error) {
    $("kill-result").textContent = "refused: " + error.message;
  }
}

$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", () => logout());
$("kill-form").addEventListener("submit", killSwitch);
if (sessionStorage.getItem(TOKEN_KEY)) start().catch(() => logout());
