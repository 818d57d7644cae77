/* Watchword fleet console: plain JavaScript, no build step, served by `watchword fleet serve`. */
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const state = { timer: null, selected: null, sites: [] };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)watchword_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

async function api(method, path, body) {
  const headers = { "X-CSRF-Token": csrf() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) { showSignIn(); throw new Error("signed out"); }
  if (!res.ok) {
    let detail = res.statusText;
    try { const j = await res.json(); detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) { /* not JSON */ }
    throw new Error(`${res.status}: ${detail}`);
  }
  return res.status === 204 ? null : res.json();
}

function showSignIn() {
  clearInterval(state.timer); state.timer = null;
  $("#page-fleet").hidden = true; $("#nav").hidden = true; $("#sign-out").hidden = true;
  $("#page-signin").hidden = false;
}

$("#signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#signin-error").textContent = "";
  const res = await fetch("/session", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: $("#signin-token").value }) });
  if (!res.ok) { $("#signin-error").textContent = res.status === 401 ? "Wrong token." : `Sign-in failed (${res.status}).`; return; }
  $("#signin-token").value = "";
  boot();
});

$("#sign-out").addEventListener("click", async () => {
  try { await api("DELETE", "/session"); } catch (e) { /* already signed out */ }
  showSignIn();
});

const when = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "");
const list = (v) => (v && v.length ? v.join(", ") : "all");
const csv = (text) => { const v = text.split(",").map((s) => s.trim()).filter(Boolean); return v.length ? v : null; };

async function refreshSites() {
  const [sites, applied] = await Promise.all([api("GET", "/fleet/sites"), api("GET", "/fleet/queries/applied")]);
  state.sites = sites;
  $("#site-rows").replaceChildren(...sites.map((s) => el("tr", { "data-site": s.id },
    el("td", {}, s.name), el("td", { class: s.online ? "ok" : "error" }, s.online ? (s.status || "online") : "silent"),
    el("td", {}, s.heartbeat_age_s === null ? "never" : `${s.heartbeat_age_s} s ago`),
    el("td", {}, Object.entries(s.cameras).map(([c, st]) => `${c}: ${st}`).join(", ")),
    el("td", { class: "applied" }, (applied[s.id] || []).join(", ")))));
  const select = $("#alert-filters [name=site]");
  if (select.options.length === 1) for (const s of sites) select.append(el("option", { value: s.id }, s.name));
  const trySite = $("#try-site");
  if (trySite.options.length === 0) for (const s of sites) trySite.append(el("option", { value: s.id }, s.name));
}

async function refreshAlerts() {
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($("#alert-filters"))) if (v) params.set(k, v);
  const alerts = await api("GET", `/fleet/alerts?${params}`);
  $("#alert-rows").replaceChildren(...alerts.map((a) => el("tr", { class: "alert-row", "data-id": a.alert_id, "data-site": a.site,
    onclick: () => openAlert(a.alert_id) },
    el("td", {}, when(a.started_at)), el("td", {}, a.site), el("td", {}, a.camera), el("td", {}, a.query),
    el("td", {}, a.severity), el("td", {}, a.review.state), el("td", { class: "verdict" }, a.review.verdict || ""))));
}

async function refreshQueries() {
  const queries = await api("GET", "/fleet/queries");
  $("#query-rows").replaceChildren(...Object.entries(queries).map(([key, q]) => el("tr", { "data-key": key },
    el("td", {}, key), el("td", {}, q.text), el("td", {}, q.severity), el("td", {}, list(q.sites)),
    el("td", {}, list(q.cameras)), el("td", {}, q.enabled ? "on" : "off"),
    el("td", {}, el("button", { class: "remove", onclick: async () => { await api("DELETE", `/fleet/queries/${key}`); refreshQueries(); } }, "Remove")))));
}

async function openAlert(id) {
  state.selected = id;
  const a = await api("GET", `/fleet/alerts/${encodeURIComponent(id)}`);
  $("#detail").hidden = false;
  $("#detail-title").textContent = `${a.query} (${a.site} / ${a.camera})`;
  $("#detail-meta").textContent = `${a.severity}, score ${a.score}, ${a.event} at ${when(a.updated_at)}; ${a.verification || "not re-ranked"}`;
  const ev = a.fleet_evidence || {};
  $("#detail-crop").src = ev.crop ? `/fleet/alerts/${encodeURIComponent(id)}/evidence/crop` : "";
  $("#detail-frame").src = ev.frame ? `/fleet/alerts/${encodeURIComponent(id)}/evidence/frame` : "";
  $("#detail-review").textContent = `state ${a.review.state}, verdict ${a.review.verdict || "none"}`;
}

for (const button of document.querySelectorAll("#detail [data-action]")) {
  button.addEventListener("click", async () => {
    if (!state.selected) return;
    await api("POST", `/fleet/alerts/${encodeURIComponent(state.selected)}/review`, { action: button.dataset.action });
    $("#detail-review").textContent = `${button.textContent}: sent to the site`;
  });
}

$("#alert-filters").addEventListener("change", refreshAlerts);

$("#try-button").addEventListener("click", async () => {
  $("#try-summary").textContent = "trying…";
  const threshold = $("#q-threshold").value === "" ? null : Number($("#q-threshold").value);
  try {
    const r = await api("POST", "/fleet/queries/try", { site: $("#try-site").value, text: $("#q-text").value,
      cameras: csv($("#q-cameras").value), threshold: threshold });
    $("#try-summary").textContent = `${r.tracks} tracks over ${r.footage_hours} h at ${$("#try-site").value}: ` +
      `${r.would_alert} would alert at threshold ${r.threshold}`;
  } catch (e) { $("#try-summary").textContent = e.message; }
});

$("#query-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#query-error").textContent = "";
  try {
    await api("POST", "/fleet/queries", { text: $("#q-text").value, severity: $("#q-severity").value,
      sites: csv($("#q-sites").value), cameras: csv($("#q-cameras").value),
      threshold: $("#q-threshold").value === "" ? null : Number($("#q-threshold").value) });
    $("#q-text").value = "";
    await refreshQueries();
  } catch (e) { $("#query-error").textContent = e.message; }
});

async function tick() {
  try {
    await Promise.all([refreshSites(), refreshAlerts()]);
    $("#live-state").textContent = "live";
  } catch (e) { $("#live-state").textContent = "reconnecting…"; }
}

async function boot() {
  const s = await (await fetch("/session", { credentials: "same-origin" })).json();
  if (!s.signed_in) { showSignIn(); return; }
  $("#page-signin").hidden = true; $("#page-fleet").hidden = false;
  $("#nav").hidden = false; $("#sign-out").hidden = !s.token_required;
  await Promise.all([tick(), refreshQueries()]);
  if (!state.timer) state.timer = setInterval(tick, 1000);
}

boot();
