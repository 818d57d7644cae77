/* Watchword console: plain JavaScript, no build step, served by the agent. */
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const state = { events: null, timers: [], queries: [], cameras: [], alerts: new Map(), statuses: {} };

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

class SignedOut extends Error {}

async function api(method, path, body) {
  const headers = { "X-CSRF-Token": csrf() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) { showSignIn(); throw new SignedOut("signed out"); }
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const j = await res.json();
      detail = typeof j.detail === "string" ? j.detail
        : Array.isArray(j.detail) ? j.detail.map((d) => d.msg || JSON.stringify(d)).join("; ") : JSON.stringify(j.detail);
    } catch (e) { /* not JSON */ }
    throw new Error(`${res.status}: ${detail}`);
  }
  if (res.status === 204) return null;
  return res.headers.get("content-type")?.includes("json") ? res.json() : res;
}

const fmtTime = (s) => (s ? new Date(s * 1000).toLocaleString() : "");
const fmt = (v, d = 2) => (v === null || v === undefined ? "" : Number(v).toFixed(d));

/* --- sign-in ------------------------------------------------------------------------------ */

function stopAll() {
  $("#tiles").replaceChildren();
  if (state.events) { state.events.close(); state.events = null; }
  state.timers.forEach(clearInterval); state.timers = [];
}

function showSignIn() {
  stopAll();
  $("#nav").hidden = true; $("#sign-out").hidden = true;
  $$(".page").forEach((p) => (p.hidden = true));
  $("#page-signin").hidden = false;
  $("#signin-token").value = "";
  $("#push-state").textContent = "";
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

async function boot() {
  const s = await (await fetch("/session", { credentials: "same-origin" })).json();
  if (!s.signed_in) { showSignIn(); return; }
  $("#page-signin").hidden = true;
  $("#nav").hidden = false; $("#sign-out").hidden = !s.token_required;
  connectEvents();
  await refreshLists();
  route();
}

/* --- push channel --------------------------------------------------------------------------- */

function connectEvents() {
  if (state.events) return;
  const source = new EventSource("/events");  // reconnects by itself, sending Last-Event-ID
  state.events = source;
  source.onopen = () => ($("#push-state").textContent = "live");
  source.onerror = () => ($("#push-state").textContent = "reconnecting…");
  source.addEventListener("alert", (ev) => {
    const alert = JSON.parse(ev.data);
    const known = state.alerts.get(alert.alert_id);
    alert.review = known ? known.review : { state: "new", verdict: null };
    state.alerts.set(alert.alert_id, alert);
    if (!$("#page-alerts").hidden) renderAlerts(alert.alert_id);
  });
  source.addEventListener("status", (ev) => {
    state.statuses = JSON.parse(ev.data);
    renderStatuses();
  });
}

/* --- routing ---------------------------------------------------------------------------------- */

function route() {
  if (!$("#page-signin").hidden) return;
  state.timers.forEach(clearInterval); state.timers = [];
  const [, page = "live", arg] = location.hash.split("/");
  $$(".page").forEach((p) => (p.hidden = true));
  $("#tiles").replaceChildren();  // closes the live streams of the tiles
  $$("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  const pages = { live: showLive, alerts: arg ? () => showAlert(decodeURIComponent(arg)) : showAlerts,
    queries: showQueries, search: showSearch, cameras: showCameras };
  (pages[page] || showLive)().catch((e) => { if (!(e instanceof SignedOut)) console.error(e); });
}
window.addEventListener("hashchange", route);

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

/* --- live ------------------------------------------------------------------------------------- */

async function showLive() {
  $("#page-live").hidden = false;
  await refreshLists();
  // MJPEG: the agent pushes each analysed frame (a few a second) while the tile is shown
  $("#tiles").replaceChildren(...state.cameras.filter((c) => c.enabled).map((c) => el("div", { class: "tile", "data-camera": c.id },
    el("img", { alt: c.id, src: `/cameras/${encodeURIComponent(c.id)}/live.mjpg?fps=3` }),
    el("div", { class: "meta" }, el("strong", {}, c.id), el("span", { class: "state" }), el("span", { class: "fps" }),
      el("span", { class: "drops" }), el("span", { class: "reconnects" }), el("span", { class: "error error-text" })))));
  renderStatuses();
}

function renderStatuses() {
  for (const tile of $$(".tile")) {
    const s = state.statuses[tile.dataset.camera] || {};
    const st = $(".state", tile); st.textContent = s.state || "pending"; st.className = `state state-${s.state}`;
    $(".fps", tile).textContent = `${fmt(s.fps, 1)} fps`;
    $(".drops", tile).textContent = `drops ${s.drops ?? 0}`;
    $(".reconnects", tile).textContent = `reconnects ${s.reconnects ?? 0}`;
    $(".error", tile).textContent = s.error || "";
  }
  for (const row of $$("#camera-rows tr")) {
    const s = state.statuses[row.dataset.camera];
    if (!s) continue;
    $(".state", row).textContent = s.state; $(".fps", row).textContent = fmt(s.fps, 1);
    $(".drops", row).textContent = s.drops; $(".reconnects", row).textContent = s.reconnects;
    $(".error", row).textContent = s.error || "";
  }
}

/* --- alerts ----------------------------------------------------------------------------------- */

async function showAlerts() {
  $("#page-alerts").hidden = false;
  await refreshLists();
  await loadAlerts();
}

async function loadAlerts() {
  const f = new FormData($("#alert-filters"));
  const params = new URLSearchParams({ limit: "200" });
  if (f.get("camera")) params.set("camera", f.get("camera"));
  if (f.get("query")) params.set("query_id", f.get("query"));
  if (f.get("since")) params.set("since", String(Date.now() / 1000 - Number(f.get("since"))));
  const page = await api("GET", `/alerts?${params}`);
  state.alerts = new Map(page.alerts.map((a) => [a.alert_id, a]));
  renderAlerts();
}
$("#alert-filters").addEventListener("change", () => loadAlerts().catch(() => {}));

function renderAlerts(fresh) {
  const f = new FormData($("#alert-filters"));
  const since = f.get("since") ? Date.now() / 1000 - Number(f.get("since")) : null;
  const rows = Array.from(state.alerts.values())
    .filter((a) => !f.get("camera") || a.camera === f.get("camera"))
    .filter((a) => !f.get("query") || String(a.query_id) === f.get("query"))
    .filter((a) => !f.get("severity") || a.severity === f.get("severity"))
    .filter((a) => !f.get("state") || (a.review?.state || "new") === f.get("state"))
    .filter((a) => since === null || a.started_at >= since)
    .sort((a, b) => b.started_at - a.started_at);
  $("#alert-rows").replaceChildren(...rows.map((a) => el("tr", { "data-alert": a.alert_id, class: a.alert_id === fresh ? "new-alert" : "" },
    el("td", {}, el("a", { href: `#/alerts/${encodeURIComponent(a.alert_id)}` }, fmtTime(a.started_at))),
    el("td", {}, a.camera), el("td", {}, a.query), el("td", { class: `sev-${a.severity}` }, a.severity),
    el("td", {}, fmt(a.peak_score ?? a.score)), el("td", {}, a.event),
    el("td", {}, [a.review?.state || "new", a.review?.verdict ? `${a.review.verdict} alarm` : ""].filter(Boolean).join(", ")))));
}

async function showAlert(id) {
  $("#page-alert").hidden = false;
  const d = await api("GET", `/alerts/${encodeURIComponent(id)}`);
  const a = d.alert;
  $("#page-alert").dataset.alert = id;
  $("#alert-title").textContent = `${a.query} — ${a.camera}, track ${a.track_id} (${a.severity}, ${fmtTime(a.started_at)})`;
  const ev = a.evidence || {};
  $("#alert-crop").src = ev.crop ? `/alerts/${encodeURIComponent(id)}/evidence/crop.jpg` : "";
  $("#alert-frame").src = ev.frame ? `/alerts/${encodeURIComponent(id)}/evidence/frame.jpg` : "";
  const query = state.queries.find((q) => q.id === a.query_id);
  const history = (d.evidence && d.evidence.score_history) || [];
  window.drawScoreChart($("#alert-chart"), history, query ? query.threshold : null);
  renderReview(d.review);
  const r = a.rationale || {};
  const box = $("#alert-rationale");
  if (!r.blanks && !r.verdict) box.replaceChildren(el("p", { class: "muted" }, r.error ? `error: ${r.error}` : "not re-ranked"));
  else box.replaceChildren(
    el("p", {}, `cloze: `, el("span", { class: "blank" }, r.cloze || "")),
    el("table", { class: "list" }, el("tr", {}, el("th", {}, "masked"), el("th", {}, "answer"), el("th", {}, "agreement")),
      ...(r.blanks || []).map((b) => el("tr", {}, el("td", {}, b.masked), el("td", {}, b.answer), el("td", {}, fmt(b.agreement))))),
    el("p", {}, `verdict: ${r.verdict ?? "none"} (p=${fmt(r.verdict_probability)}, ${r.verdict_source || ""}); fused ${fmt(r.fused_score)}; verified ${a.verified}`));
  $("#alert-deliveries").replaceChildren(el("tr", {}, ...["event", "sink", "state", "attempts", "error", "delivered"].map((h) => el("th", {}, h))),
    ...d.deliveries.map((x) => el("tr", {}, el("td", {}, `${x.seq} ${x.event}`), el("td", {}, x.sink), el("td", {}, x.state),
      el("td", {}, x.attempts), el("td", {}, x.last_error || ""), el("td", {}, fmtTime(x.delivered_at)))));
}

function renderReview(review) {
  $("#alert-review").textContent = review ? `${review.state}${review.verdict ? `, ${review.verdict} alarm` : ""}` : "";
  $("#alert-review").dataset.verdict = review?.verdict || "";
}

for (const button of $$(".actions button")) {
  button.addEventListener("click", async () => {
    const id = $("#page-alert").dataset.alert;
    renderReview(await api("POST", `/alerts/${encodeURIComponent(id)}/review`, { action: button.dataset.action }));
  });
}

/* --- queries ---------------------------------------------------------------------------------- */

async function showQueries() {
  $("#page-queries").hidden = false;
  await refreshLists();
  renderQueries();
}

function renderQueries() {
  $("#query-rows").replaceChildren(...state.queries.map((q) => el("tr", { "data-query": q.id },
    el("td", {}, q.id), el("td", {}, q.text), el("td", {}, q.threshold === null ? "auto" : fmt(q.threshold)),
    el("td", { class: `sev-${q.severity}` }, q.severity), el("td", {}, q.cameras ? q.cameras.join(", ") : "all"),
    el("td", {}, q.cooldown_s), el("td", {}, el("input", { type: "checkbox", ...(q.enabled ? { checked: "" } : {}),
      ...(q.fleet ? { disabled: "" } : {}),
      onchange: async (e) => { await api("PATCH", `/queries/${q.id}`, { enabled: e.target.checked }); await showQueries(); } })),
    // a fleet query (README "Fleet") is changed at the hub only: read-only here
    q.fleet ? el("td", { class: "muted fleet", title: q.fleet }, "fleet query (read-only)")
      : el("td", {}, el("button", { onclick: () => editQuery(q) }, "Edit"), " ",
        el("button", { onclick: async () => { if (confirm(`Delete "${q.text}"?`)) { await api("DELETE", `/queries/${q.id}`); await showQueries(); } } }, "Delete")))));
}

function editQuery(q) {
  const form = $("#query-form");
  form.id.value = q ? q.id : ""; form.text.value = q ? q.text : "";
  form.threshold.value = q && q.threshold !== null ? q.threshold : "";
  form.severity.value = q ? q.severity : "warning"; form.cameras.value = q && q.cameras ? q.cameras.join(", ") : "";
  form.cooldown_s.value = q ? q.cooldown_s : 60; form.normal_prompts.value = q && q.normal_prompts ? q.normal_prompts.join("; ") : "";
  form.enabled.checked = q ? q.enabled : true;
  $("#query-form-title").textContent = q ? `Edit query ${q.id}` : "Add a query";
  scheduleTry();
}
$("#query-reset").addEventListener("click", () => editQuery(null));

function queryBody(form) {
  const list = (s, sep) => (s.trim() ? s.split(sep).map((x) => x.trim()).filter(Boolean) : null);
  return { text: form.text.value.trim(), threshold: form.threshold.value ? Number(form.threshold.value) : null,
    severity: form.severity.value, cameras: list(form.cameras.value, ","), cooldown_s: Number(form.cooldown_s.value || 0),
    normal_prompts: list(form.normal_prompts.value, ";"), enabled: form.enabled.checked };
}

$("#query-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target; $("#query-error").textContent = "";
  try {
    const body = queryBody(form);
    if (form.id.value) await api("PATCH", `/queries/${form.id.value}`, body);
    else await api("POST", "/queries", body);
    editQuery(null); await showQueries();
  } catch (e) { $("#query-error").textContent = e.message; }
});

let tryTimer = null;
function scheduleTry() { clearTimeout(tryTimer); tryTimer = setTimeout(() => tryQuery().catch((e) => ($("#try-summary").textContent = e.message)), 400); }
$("#query-form").addEventListener("input", scheduleTry);
$("#try-rate").addEventListener("input", scheduleTry);

async function tryQuery() {
  const body = queryBody($("#query-form"));
  if (!body.text) return;
  const r = await api("POST", "/queries/try", { text: body.text, normal_prompts: body.normal_prompts, cameras: body.cameras,
    threshold: body.threshold, alerts_per_hour: Number($("#try-rate").value || 2) });
  $("#try-summary").textContent = `${r.would_alert} of ${r.tracks} tracks in ${fmt(r.footage_hours * 60, 0)} min would alert at ${fmt(r.threshold)}; ` +
    (r.suggested_threshold === null ? "no tracks yet." : `${r.alerts_per_hour}/h would need threshold ${fmt(r.suggested_threshold, 3)}.`);
  $("#try-summary").dataset.suggested = r.suggested_threshold ?? "";
  $("#try-results").replaceChildren(...Object.entries(r.cameras).map(([cam, hits]) => el("div", {},
    el("h4", {}, cam), el("div", { class: "thumbs" }, ...hits.map(thumb)))));
}

function thumb(h) {
  return el("div", { class: `thumb${h.would_alert ? " hit" : ""}`, "data-track": h.track_id },
    el("img", { src: h.thumbnail, alt: `track ${h.track_id}` }), `#${h.track_id} ${fmt(h.score, 3)}`, el("br"),
    new Date(h.last_seen * 1000).toLocaleTimeString());
}

/* --- search ----------------------------------------------------------------------------------- */

async function showSearch() { $("#page-search").hidden = false; await refreshLists(); }

$("#search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const params = new URLSearchParams({ text: f.get("text"), since: f.get("since") });
  if (f.get("camera")) params.set("camera", f.get("camera"));
  const r = await api("GET", `/search?${params}`);
  $("#search-results").replaceChildren(...(r.results.length ? r.results.map((h) => { const t = thumb(h); t.prepend(el("div", {}, h.camera)); return t; })
    : [el("p", { class: "muted" }, "No tracks in that time.")]));
});

/* --- cameras ---------------------------------------------------------------------------------- */

async function showCameras() {
  $("#page-cameras").hidden = false;
  await refreshLists();
  $("#camera-rows").replaceChildren(...state.cameras.map((c) => el("tr", { "data-camera": c.id },
    el("td", {}, c.id), el("td", {}, c.uri), el("td", { class: "state" }, c.enabled ? c.status?.state || "" : "disabled"),
    el("td", { class: "fps" }, fmt(c.status?.fps, 1)), el("td", { class: "drops" }, c.status?.drops ?? ""),
    el("td", { class: "reconnects" }, c.status?.reconnects ?? ""), el("td", { class: "error" }, c.status?.error || ""),
    el("td", {}, el("button", { onclick: async () => { await api("PATCH", `/cameras/${encodeURIComponent(c.id)}`, { enabled: !c.enabled }); await showCameras(); } }, c.enabled ? "Disable" : "Enable"), " ",
      el("button", { onclick: async () => { if (confirm(`Remove camera ${c.id}?`)) { await api("DELETE", `/cameras/${encodeURIComponent(c.id)}`); await showCameras(); } } }, "Remove")))));
  renderStatuses();
}

function cameraBody(form) {
  const body = { id: form.id.value.trim(), uri: form.uri.value.trim(), loop: form.loop.checked };
  if (form.analysis_fps.value) body.analysis_fps = Number(form.analysis_fps.value);
  return body;
}

$("#camera-form").addEventListener("submit", async (ev) => {
  ev.preventDefault(); $("#camera-error").textContent = "";
  try { await api("POST", "/cameras", cameraBody(ev.target)); ev.target.reset(); await showCameras(); } catch (e) { $("#camera-error").textContent = e.message; }
});

$("#camera-test").addEventListener("click", async () => {
  const form = $("#camera-form"); $("#camera-error").textContent = "testing…";
  const img = $("#camera-snapshot"); img.hidden = true;
  try {
    const r = await api("POST", "/cameras/test", { uri: form.uri.value.trim() });
    $("#camera-error").textContent = r.ok ? `ok: ${r.width}×${r.height} in ${r.seconds} s` : r.error;
    if (r.snapshot) { img.src = r.snapshot; img.hidden = false; }
  } catch (e) { $("#camera-error").textContent = e.message; }
});

boot();
