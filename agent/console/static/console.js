/* Watchword console, the core: requests, errors, sign-in, the live feed and routing.
   Plain JavaScript, no build step, served by the agent. The pages (live.js, alerts.js, admin.js)
   register themselves in `pages`; a fleet console can reuse this file with its own pages. */
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const state = { events: null, timers: [], queries: [], cameras: [], alerts: new Map(), statuses: {},
  capabilities: {}, conn: { up: false, lostAt: null, lastStatusAt: 0, retry: null, delayMs: 1000, everUp: false } };
const pages = {};  // name -> async function(arg): shows the page
const STALE_AFTER_S = 5;  // no status from the agent for this long: the feed is down

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)watchword_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

class SignedOut extends Error {}

/** An answer the operator can read (`message`) with the server's own words behind it (`details`). */
class ApiError extends Error {
  constructor(status, message, details) { super(message); this.status = status; this.details = details; }
}

/** The server's error body as one line, without the status prefix. */
function detailText(body) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) {
    return d.map((x) => {
      const field = Array.isArray(x.loc) ? x.loc.filter((p) => p !== "body").join(".") : "";
      let msg = String(x.msg || "").replace(/^Value error, /, "");
      if (/should match pattern/.test(msg)) msg = "use only letters, digits, '.', '_' and '-'";
      return field ? `${field}: ${msg}` : msg;
    }).join("; ");
  }
  return d === undefined ? "" : JSON.stringify(d);
}

const STATUS_HINTS = {
  400: "The request was malformed.", 403: "The page's security token is stale: reload the page.",
  404: "Not found.", 409: "That conflicts with what is stored.", 413: "That is too large.",
  422: "Check the form:", 429: "Too many tries: wait a moment.", 500: "The agent failed to answer: see its log.",
  502: "The agent is not reachable.", 503: "The agent is busy or starting: try again in a moment.",
};

async function api(method, path, body) {
  const headers = { "X-CSRF-Token": csrf() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "The agent is not reachable: check that it is running.", String(e));
  }
  if (res.status === 401) { showSignIn("Your session has ended: sign in again."); throw new SignedOut("signed out"); }
  if (!res.ok) {
    let raw = res.statusText, detail = "";
    try { const j = await res.json(); detail = detailText(j); raw = JSON.stringify(j); } catch (e) { /* not JSON */ }
    const hint = STATUS_HINTS[res.status] || `The agent answered ${res.status}.`;
    const message = res.status === 422 && detail ? `${hint} ${detail}` : res.status === 404 && detail ? `${detail[0].toUpperCase()}${detail.slice(1)}.` : hint;
    throw new ApiError(res.status, message, `${res.status} ${method} ${path}: ${raw}`);
  }
  if (res.status === 204) return null;
  return res.headers.get("content-type")?.includes("json") ? res.json() : res;
}

/** Shows `error` in `node`: a short message, the raw text behind a "details" toggle. */
function showError(node, error) {
  if (!error) { node.replaceChildren(); return; }
  if (error instanceof SignedOut) return;
  const message = error instanceof ApiError ? error.message : "Something went wrong in the page.";
  const details = error instanceof ApiError ? error.details : String(error && error.stack || error);
  node.replaceChildren(el("span", { class: "error-message" }, message), " ",
    details ? el("details", { class: "error-details" }, el("summary", {}, "details"), el("pre", {}, details)) : null);
}

/** A short sentence for screen readers (new alerts, connection changes). */
function announce(text) {
  const region = $("#announcer");
  region.textContent = "";
  setTimeout(() => (region.textContent = text), 30);
}

const fmtTime = (s) => (s ? new Date(s * 1000).toLocaleString() : "");
const fmtClock = (s) => (s ? new Date(s * 1000).toLocaleTimeString() : "");
const fmt = (v, d = 2) => (v === null || v === undefined ? "" : Number(v).toFixed(d));

/* --- sign-in ------------------------------------------------------------------------------ */

/** Ends the tiles' MJPEG streams: an <img> taken out of the page keeps its stream open until it is
    collected, and a browser has only six connections to the agent (the sign-out request waited). */
function closeTiles() {
  for (const img of $$("#tiles img")) img.removeAttribute("src");
  $("#tiles").replaceChildren();
}

function stopAll() {
  closeTiles();
  if (state.events) { state.events.close(); state.events = null; }
  clearTimeout(state.conn.retry);
  state.timers.forEach(clearInterval); state.timers = [];
}

function showSignIn(why = "") {
  stopAll();
  state.conn.up = false; state.conn.everUp = false;
  $("#conn-banner").hidden = true;
  $("#nav").hidden = true; $("#sign-out").hidden = true; $("#notify-box").hidden = true;
  $$(".page").forEach((p) => (p.hidden = true));
  $("#page-signin").hidden = false;
  $("#signin-token").value = "";
  $("#signin-reason").textContent = why;
  $("#push-state").textContent = "";
  document.title = "Sign in — Watchword console";
}

$("#signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#signin-error").textContent = "";
  let res;
  try {
    res = await fetch("/session", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: $("#signin-token").value }) });
  } catch (e) { $("#signin-error").textContent = "The agent is not reachable: check that it is running."; return; }
  if (!res.ok) {
    $("#signin-error").textContent = res.status === 401 ? "Wrong token." : res.status === 429 ? "Too many failed sign-ins: wait and try again." : `Sign-in failed (${res.status}).`;
    return;
  }
  $("#signin-token").value = "";
  boot();
});

$("#sign-out").addEventListener("click", async () => {
  try { await api("DELETE", "/session"); } catch (e) { /* already signed out */ }
  showSignIn();
});

async function boot() {
  let s;
  try { s = await (await fetch("/session", { credentials: "same-origin" })).json(); } catch (e) {
    showConnection(false); state.conn.retry = setTimeout(boot, 2000); return;
  }
  if (!s.signed_in) { showSignIn(); return; }
  $("#page-signin").hidden = true;
  $("#nav").hidden = false; $("#sign-out").hidden = !s.token_required; $("#notify-box").hidden = false;
  connectEvents();
  state.timers.push(setInterval(watchFeed, 1000));
  try { state.capabilities = await api("GET", "/capabilities"); } catch (e) { state.capabilities = {}; }
  await refreshLists().catch(() => {});
  await loadUnreviewed().catch(() => {});
  route();
}

/* --- the live feed: alerts and camera status, and whether it is live at all ----------------- */

function connectEvents() {
  if (state.events) return;
  const source = new EventSource("/events");  // retries by itself after a network error
  state.events = source;
  source.onopen = () => { state.conn.delayMs = 1000; };
  source.onerror = () => {
    showConnection(false);
    if (source.readyState === EventSource.CLOSED) {  // an HTTP error (401 after a restart): it gave up
      source.close(); if (state.events === source) state.events = null;
      reconnectSoon();
    }
  };
  source.addEventListener("alert", (ev) => {
    const alert = JSON.parse(ev.data);
    const known = state.alerts.get(alert.alert_id);
    alert.review = known ? known.review : { state: "new", verdict: null };
    state.alerts.set(alert.alert_id, alert);
    if (typeof renderAlerts === "function" && !$("#page-alerts").hidden) renderAlerts(alert.alert_id);
    updateUnreviewed();
    if (!known) { try { onNewAlert(alert); } catch (e) { console.error("new alert:", e); } }
  });
  source.addEventListener("status", (ev) => {
    state.statuses = JSON.parse(ev.data);
    state.conn.lastStatusAt = Date.now() / 1000;
    for (const [id, s] of Object.entries(state.statuses)) {
      if (s.last_frame_age_s !== null && s.last_frame_age_s !== undefined) s.frame_at = state.conn.lastStatusAt - s.last_frame_age_s;
    }
    showConnection(true);
    if (typeof renderStatuses === "function") renderStatuses();
  });
}

/** After the feed gave up: signed out (sessions did not survive) -> sign-in at once; else retry. */
function reconnectSoon() {
  clearTimeout(state.conn.retry);
  state.conn.retry = setTimeout(async () => {
    let s = null;
    try { s = await (await fetch("/session", { credentials: "same-origin" })).json(); } catch (e) { /* agent down */ }
    if (s && !s.signed_in) { showSignIn("The agent restarted and your session has ended: sign in again."); return; }
    state.conn.delayMs = Math.min(state.conn.delayMs * 2, 4000);
    if (s) connectEvents(); else reconnectSoon();
  }, state.conn.delayMs);
}

/** The feed counts as live while status arrives every second; silence is a lost connection. */
function watchFeed() {
  if (state.conn.up && Date.now() / 1000 - state.conn.lastStatusAt > STALE_AFTER_S) {
    showConnection(false);
    if (state.events && state.events.readyState !== EventSource.CONNECTING) {  // open but silent
      state.events.close(); state.events = null; reconnectSoon();
    }
  }
  if (!state.conn.up) {
    const since = state.conn.lostAt ? Math.round(Date.now() / 1000 - state.conn.lostAt) : 0;
    $("#conn-since").textContent = `${since} s`;
  }
}

function showConnection(up) {
  const conn = state.conn;
  if (up === conn.up) return;
  conn.up = up;
  if (up) {
    const wasLost = conn.lostAt !== null;
    conn.lostAt = null; conn.everUp = true;
    $("#conn-banner").hidden = true;
    $("#push-state").textContent = "live";
    $("#push-state").className = "conn-live";
    if (wasLost) { announce("Connection to the agent is back: the view is live again."); reconnectTiles(); }
  } else {
    conn.lostAt = conn.lostAt ?? Date.now() / 1000;
    $("#conn-lost-at").textContent = fmtClock(conn.lostAt);
    $("#conn-banner").hidden = false;
    $("#push-state").textContent = "not live";
    $("#push-state").className = "conn-lost";
    announce("Connection to the agent lost: what you see is not live.");
  }
  if (typeof renderStatuses === "function") renderStatuses();
}

/* --- new alerts: count, title, tile highlight, optional sound and notification -------------- */

function unreviewedCount() {
  let n = 0;
  for (const a of state.alerts.values()) if ((a.review?.state || "new") === "new") n++;
  return n;
}

function updateUnreviewed() {
  const n = unreviewedCount();
  $("#unreviewed").textContent = n ? String(n) : "";
  $("#unreviewed").hidden = n === 0;
  $("#unreviewed").setAttribute("aria-label", `${n} unreviewed`);
  const page = $("#nav a[aria-current=page]")?.textContent.replace(/\d+$/, "").trim() || "Watchword";
  document.title = `${n ? `(${n}) ` : ""}${page} — Watchword console`;
}

async function loadUnreviewed() {
  const page = await api("GET", "/alerts?limit=500&since=" + String(Date.now() / 1000 - 86400));
  for (const a of page.alerts) state.alerts.set(a.alert_id, a);
  updateUnreviewed();
  if (typeof renderAlerts === "function" && !$("#page-alerts").hidden) renderAlerts();
}

const NOTIFY_KEY = "watchword.notifyCritical";
function onNewAlert(alert) {
  announce(`New ${alert.severity} alert: ${alert.query} on ${alert.camera}.`);
  const tile = $(`.tile[data-camera="${CSS.escape(alert.camera)}"]`);
  if (tile) { tile.classList.add("alerting"); setTimeout(() => tile.classList.remove("alerting"), 10000); }
  if (alert.severity !== "critical" || localStorage.getItem(NOTIFY_KEY) !== "1") return;
  try {
    const audio = new AudioContext(); const osc = audio.createOscillator(); const gain = audio.createGain();
    osc.frequency.value = 880; gain.gain.value = 0.1; osc.connect(gain).connect(audio.destination);
    osc.start(); osc.stop(audio.currentTime + 0.25);
  } catch (e) { /* no audio */ }
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification(`Critical: ${alert.query}`, { body: `${alert.camera}, track ${alert.track_id}`, tag: alert.alert_id });
  }
}

$("#notify").checked = localStorage.getItem(NOTIFY_KEY) === "1";
$("#notify").addEventListener("change", async (ev) => {
  localStorage.setItem(NOTIFY_KEY, ev.target.checked ? "1" : "0");
  if (ev.target.checked && "Notification" in window && Notification.permission === "default") {
    await Notification.requestPermission();
  }
});

/* --- routing ---------------------------------------------------------------------------------- */

function route() {
  if (!$("#page-signin").hidden) return;
  const [, page = "live", arg] = location.hash.split("/");
  $$(".page").forEach((p) => (p.hidden = true));
  closeTiles();
  const current = page === "alerts" ? "alerts" : page;
  $$("#nav a").forEach((a) => {
    if (a.dataset.page === current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  updateUnreviewed();
  const show = page === "alerts" && arg ? () => pages.alert(decodeURIComponent(arg)) : pages[page] || pages.live;
  show().catch((e) => { if (!(e instanceof SignedOut)) showError($("#page-error"), e); });
}
window.addEventListener("hashchange", () => { showError($("#page-error"), null); route(); });

async function refreshLists() {
  [state.queries, state.cameras] = await Promise.all([api("GET", "/queries"), api("GET", "/cameras").catch(() => [])]);
  const cams = state.cameras.map((c) => c.id);
  for (const sel of $$("select[name=camera]")) {
    const v = sel.value; sel.replaceChildren(el("option", { value: "" }, "all cameras"), ...cams.map((c) => el("option", {}, c))); sel.value = v;
  }
  const qsel = $("#alert-filters select[name=query]"); const qv = qsel.value;
  qsel.replaceChildren(el("option", { value: "" }, "all queries"), ...state.queries.map((q) => el("option", { value: q.id }, q.text)));
  qsel.value = qv;
}
