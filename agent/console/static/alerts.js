/* Watchword console, the Alerts inbox and one alert's evidence. */
"use strict";

const inbox = { groups: [], cursor: 0, selected: new Set() };

pages.alerts = async function showAlerts() {
  $("#page-alerts").hidden = false;
  inbox.cursor = 0;  // the newest first
  renderAlerts();  // what the feed brought while another page was open, before the list reloads
  await refreshLists();
  await loadAlerts();
};

async function loadAlerts() {
  const f = new FormData($("#alert-filters"));
  const params = new URLSearchParams({ limit: "500" });
  if (f.get("camera")) params.set("camera", f.get("camera"));
  if (f.get("query")) params.set("query_id", f.get("query"));
  if (f.get("since")) params.set("since", String(Date.now() / 1000 - Number(f.get("since"))));
  const page = await api("GET", `/alerts?${params}`);
  for (const a of page.alerts) state.alerts.set(a.alert_id, a);
  updateUnreviewed();
  renderAlerts();
}
$("#alert-filters").addEventListener("change", () => loadAlerts().catch((e) => showError($("#page-error"), e)));

/** Alerts of one (camera, query, person), newest first, as one inbox row. */
function groupAlerts(alerts) {
  const groups = new Map();
  for (const a of alerts) {
    const key = `${a.camera}\u0000${a.query_id}\u0000${a.track_id}`;
    if (!groups.has(key)) groups.set(key, { key, alerts: [] });
    groups.get(key).alerts.push(a);
  }
  return Array.from(groups.values());
}

const reviewText = (r) => [r?.state || "new", r?.verdict ? `${r.verdict} alarm` : ""].filter(Boolean).join(", ");

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
  const focusedKey = inbox.groups[inbox.cursor]?.key;
  inbox.groups = groupAlerts(rows);
  const keys = new Set(inbox.groups.map((g) => g.key));
  for (const k of Array.from(inbox.selected)) if (!keys.has(k)) inbox.selected.delete(k);
  const at = inbox.groups.findIndex((g) => g.key === focusedKey);
  inbox.cursor = at >= 0 ? at : Math.min(inbox.cursor, Math.max(0, inbox.groups.length - 1));
  $("#alert-rows").replaceChildren(...inbox.groups.map((g, i) => alertRow(g, i, fresh)));
  const filtered = [...new FormData($("#alert-filters")).values()].some(Boolean);
  $("#alerts-empty").hidden = inbox.groups.length > 0;
  $("#alerts-empty").textContent = filtered ? "No alerts match these filters." : "No alerts yet. New ones appear here as they happen.";
  $("#alert-table").hidden = inbox.groups.length === 0;
  renderSelection();
}

function alertRow(group, index, fresh) {
  const a = group.alerts[0];
  const id = encodeURIComponent(a.alert_id);
  const unreviewed = group.alerts.filter((x) => (x.review?.state || "new") === "new").length;
  const checked = inbox.selected.has(group.key);
  const label = `${a.query} on ${a.camera}, track ${a.track_id}`;
  return el("tr", { "data-alert": a.alert_id, "data-group": group.key, tabindex: "-1",
    class: [group.alerts.some((x) => x.alert_id === fresh) ? "new-alert" : "", index === inbox.cursor ? "cursor" : "",
      unreviewed ? "unreviewed" : ""].join(" ").trim(), onclick: () => { inbox.cursor = index; markCursor(); } },
    el("td", {}, el("input", { type: "checkbox", class: "pick", "aria-label": `select ${label}`, checked,
      onchange: (e) => { if (e.target.checked) inbox.selected.add(group.key); else inbox.selected.delete(group.key); renderSelection(); } })),
    el("td", { class: "thumb-cell" }, a.evidence ? el("img", { class: "row-thumb", loading: "lazy", alt: `crop of ${label}`,
      src: `/alerts/${id}/evidence/crop.jpg` }) : el("span", { class: "muted" }, "no image")),
    el("td", {}, el("a", { href: `#/alerts/${id}` }, fmtTime(a.started_at)),
      group.alerts.length > 1 ? el("span", { class: "repeat", title: "repeats of this person for this query" }, ` ×${group.alerts.length}`) : null),
    el("td", {}, a.camera), el("td", {}, a.query), el("td", { class: `sev-${a.severity}` }, a.severity),
    el("td", {}, fmt(a.peak_score ?? a.score)),
    el("td", { class: "review" }, reviewText(a.review)),
    el("td", { class: "row-actions" },
      el("button", { "data-row-action": "acknowledge", "aria-label": `acknowledge ${label}`, onclick: (e) => { e.stopPropagation(); reviewGroups([group], "acknowledge"); } }, "Ack"),
      el("button", { "data-row-action": "false_alarm", "aria-label": `false alarm: ${label}`, onclick: (e) => { e.stopPropagation(); reviewGroups([group], "false_alarm"); } }, "False alarm")));
}

function markCursor() {
  $$("#alert-rows tr").forEach((tr, i) => tr.classList.toggle("cursor", i === inbox.cursor));
  const row = $$("#alert-rows tr")[inbox.cursor];
  if (row) { row.focus({ preventScroll: true }); row.scrollIntoView({ block: "nearest" }); }
}

function renderSelection() {
  const n = inbox.selected.size;
  $("#bulk-count").textContent = n ? `${n} selected` : "";
  $$("#bulk-actions button").forEach((b) => (b.disabled = n === 0));
  $("#select-all").checked = n > 0 && n === inbox.groups.length;
}

/** Applies `action` to every alert of `groups` (a repeat is one person: one decision for all). */
async function reviewGroups(groups, action) {
  showError($("#page-error"), null);
  try {
    for (const g of groups) {
      for (const a of g.alerts) {
        if (action === "acknowledge" && (a.review?.state || "new") !== "new") continue;
        a.review = await api("POST", `/alerts/${encodeURIComponent(a.alert_id)}/review`, { action });
      }
    }
  } catch (e) { showError($("#page-error"), e); }
  updateUnreviewed();
  renderAlerts();
}

$("#select-all").addEventListener("change", (ev) => {
  inbox.selected = new Set(ev.target.checked ? inbox.groups.map((g) => g.key) : []);
  renderAlerts();
});
for (const b of $$("#bulk-actions button")) {
  b.addEventListener("click", async () => {
    const groups = inbox.groups.filter((g) => inbox.selected.has(g.key));
    inbox.selected.clear();
    await reviewGroups(groups, b.dataset.bulk);
  });
}

/* Keyboard: j/k move, a acknowledge, f false alarm, x select, Enter open, ? help. */
document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || /^(INPUT|SELECT|TEXTAREA)$/.test(ev.target.tagName)) return;
  if (ev.key === "?") { ev.preventDefault(); const d = $("#help"); if (d.open) d.close(); else d.showModal(); return; }
  if ($("#page-alerts").hidden || !inbox.groups.length) return;
  const group = inbox.groups[inbox.cursor];
  if (ev.key === "j") { inbox.cursor = Math.min(inbox.cursor + 1, inbox.groups.length - 1); markCursor(); }
  else if (ev.key === "k") { inbox.cursor = Math.max(inbox.cursor - 1, 0); markCursor(); }
  else if (ev.key === "a") reviewGroups([group], "acknowledge");
  else if (ev.key === "f") reviewGroups([group], "false_alarm");
  else if (ev.key === "x") { if (inbox.selected.has(group.key)) inbox.selected.delete(group.key); else inbox.selected.add(group.key); renderAlerts(); }
  else if (ev.key === "Enter") location.hash = `#/alerts/${encodeURIComponent(group.alerts[0].alert_id)}`;
  else return;
  ev.preventDefault();
});
$("#help-close").addEventListener("click", () => $("#help").close());

/* --- one alert ------------------------------------------------------------------------------ */

let shownAlert = null;  // the id whose evidence is on screen: the buttons act on it and nothing else

function clearAlertPage() {
  shownAlert = null;
  delete $("#page-alert").dataset.alert;
  $("#alert-title").textContent = "Loading alert…";
  $("#alert-reason").textContent = "";
  $("#alert-missing").hidden = true;
  $("#alert-body").hidden = true;
  for (const img of ["#alert-crop", "#alert-frame"]) { $(img).removeAttribute("src"); }
  $("#alert-clip").replaceChildren();
  window.drawScoreChart($("#alert-chart"), [], null, {});
  $("#alert-review").textContent = ""; $("#alert-review").dataset.verdict = "";
  $("#alert-rationale").replaceChildren(); $("#alert-deliveries").replaceChildren(); $("#alert-history").replaceChildren();
  $("#alert-note").value = "";
  showError($("#alert-error"), null);
}

pages.alert = async function showAlert(id) {
  clearAlertPage();
  $("#page-alert").hidden = false;
  let d;
  try { d = await api("GET", `/alerts/${encodeURIComponent(id)}`); } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      $("#alert-title").textContent = "Alert not found";
      $("#alert-missing").hidden = false;
      return;
    }
    throw e;
  }
  if (location.hash.split("/")[2] !== encodeURIComponent(id) && decodeURIComponent(location.hash.split("/")[2] || "") !== id) return;  // navigated away meanwhile
  shownAlert = id;
  const a = d.alert;
  $("#page-alert").dataset.alert = id;
  $("#alert-title").textContent = `${a.query} — ${a.camera}, track ${a.track_id}`;
  $("#alert-sub").textContent = `${a.severity}, ${fmtTime(a.started_at)}`;
  $("#alert-reason").textContent = d.reason || "";
  $("#alert-body").hidden = false;
  const ev = a.evidence || {};
  const base = `/alerts/${encodeURIComponent(id)}/evidence/`;
  if (ev.crop) $("#alert-crop").src = base + "crop.jpg";
  if (ev.frame) { $("#alert-frame").src = base + "frame.jpg"; $("#alert-frame-link").href = base + "frame.jpg"; }
  if (ev.clip) {
    $("#alert-clip").replaceChildren(el("video", { src: base + ev.clip.split("/").pop(), controls: true, muted: true, loop: true,
      playsinline: true, "aria-label": "clip around the alert" }));
  } else $("#alert-clip").replaceChildren(el("p", { class: "muted" }, "No clip for this alert."));
  const query = state.queries.find((q) => q.id === a.query_id);
  const threshold = d.threshold ?? null;
  const history = (d.evidence && d.evidence.score_history) || [];
  window.drawScoreChart($("#alert-chart"), history, threshold, { firedAt: a.media?.started_s ?? null, auto: query ? query.threshold === null : false });
  renderReview(d.review);
  renderRationale(a);
  $("#alert-deliveries").replaceChildren(el("tr", {}, ...["event", "sink", "state", "attempts", "error", "delivered"].map((h) => el("th", { scope: "col" }, h))),
    ...d.deliveries.map((x) => el("tr", {}, el("td", {}, `${x.seq} ${x.event}`), el("td", {}, x.sink), el("td", {}, x.state),
      el("td", {}, x.attempts), el("td", {}, x.last_error || ""), el("td", {}, fmtTime(x.delivered_at)))));
};

function renderRationale(a) {
  const r = a.rationale || {};
  const box = $("#alert-rationale");
  if (!r.blanks && !r.verdict) { box.replaceChildren(el("p", { class: "muted" }, r.error ? `The re-ranker failed: ${r.error}` : "Not re-ranked by an LMM.")); return; }
  box.replaceChildren(
    el("p", {}, "cloze: ", el("span", { class: "blank" }, r.cloze || "")),
    el("table", { class: "list" }, el("tr", {}, el("th", {}, "masked"), el("th", {}, "answer"), el("th", {}, "agreement")),
      ...(r.blanks || []).map((b) => el("tr", {}, el("td", {}, b.masked), el("td", {}, b.answer), el("td", {}, fmt(b.agreement))))),
    el("p", {}, `verdict: ${r.verdict ?? "none"} (p=${fmt(r.verdict_probability)}, ${r.verdict_source || ""}); fused ${fmt(r.fused_score)}; verified ${a.verified}`));
}

function renderReview(review) {
  $("#alert-review").textContent = review ? reviewText(review) : "";
  $("#alert-review").dataset.verdict = review?.verdict || "";
  $("#alert-review").dataset.state = review?.state || "new";
  if (review?.note && !$("#alert-note").value) $("#alert-note").value = review.note;
  $("#alert-history").replaceChildren(...(review?.history || []).slice().reverse().map((h) =>
    el("li", {}, `${fmtTime(h.at)}: ${h.action.replace("_", " ")}${h.by ? ` by ${h.by}` : ""}`, h.note ? el("q", {}, h.note) : null)));
  if (shownAlert && state.alerts.has(shownAlert)) { state.alerts.get(shownAlert).review = review; updateUnreviewed(); }
}

for (const button of $$("#page-alert button[data-action]")) {
  button.addEventListener("click", async () => {
    const id = shownAlert;  // the alert this page loaded, never a stale one
    if (!id) return;
    showError($("#alert-error"), null);
    try {
      const body = { action: button.dataset.action };
      if (button.dataset.action === "note") body.note = $("#alert-note").value.trim();
      const review = await api("POST", `/alerts/${encodeURIComponent(id)}/review`, body);
      if (shownAlert === id) renderReview(review);
    } catch (e) { showError($("#alert-error"), e); }
  });
}

$("#alert-frame").addEventListener("click", () => $("#alert-frame-box").classList.toggle("zoomed"));
$("#alert-frame").addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("#alert-frame-box").classList.toggle("zoomed"); } });
