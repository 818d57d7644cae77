/* Watchword console: Queries (with try before you save), Search and Cameras. */
"use strict";

/* --- queries ---------------------------------------------------------------------------------- */

pages.queries = async function showQueries() {
  $("#page-queries").hidden = false;
  if (!state.queries.length) $("#query-rows").replaceChildren();  // no stale "no queries" while loading
  await refreshLists();
  $("#zone-names").replaceChildren(...zoneNames().map((n) => el("option", { value: n })));
  renderQueries();
  const off = state.capabilities.search === false;
  $("#try-off").hidden = !off;
  $("#try-off").textContent = off ? state.capabilities.search_reason || "" : "";
  $("#try-on").hidden = off;
};

const STOP_WORDS = new Set("a an the of to in on at for by with and or someone somebody person people man woman is are be being who that".split(" "));

// Words of place: a cue cannot read them; a zone picked for the query stands for them.
const PLACE_WORDS = new Set("near by beside next inside outside entrance entry exit door doors doorway gate gates corridor hall lobby area zone corner front back side counter desk".split(" "));

/** How the agent reads a query: its cue (and the phrase it matched), its zones and the words that play no part. */
function queryReading(q) {
  const cue = q.cue;
  const zones = q.zones && q.zones.length ? q.zones : null;
  const where = zones ? `; only in zone ${zones.join(", ")}` : "; anywhere in the image";
  if (!cue) return { text: `CLIP: the whole text is compared with what the cameras see${where}`, cue: null, ignored: [], place: [], zones };
  if (!cue.cue) return { text: `no behaviour cue${cue.reason ? ` (${cue.reason})` : ""}${where}`, cue: null, ignored: [], place: [], zones };
  const phrase = new Set(String(cue.phrase || "").toLowerCase().split(/\W+/));
  const unread = q.text.toLowerCase().split(/\W+/).filter((w) => w && !STOP_WORDS.has(w) && !phrase.has(w));
  // "near the entrance": ignored (and said so) unless a zone is picked, which then reads it
  const place = unread.filter((w) => PLACE_WORDS.has(w));
  const ignored = zones ? unread.filter((w) => !PLACE_WORDS.has(w)) : unread;
  return { text: `cue ${cue.cue} (like "${cue.phrase}", ${fmt(cue.confidence)})${where}`, cue: cue.cue, ignored, place: zones ? [] : place, zones };
}

/** Pairs of enabled queries that raise on the same person for the same reason (same cue, shared cameras). */
function overlaps(queries) {
  const out = [];
  const enabled = queries.filter((q) => q.enabled && q.cue && q.cue.cue);
  for (let i = 0; i < enabled.length; i++) {
    for (let j = i + 1; j < enabled.length; j++) {
      const a = enabled[i], b = enabled[j];
      const shared = (!a.cameras || !b.cameras || a.cameras.some((c) => b.cameras.includes(c)))
        && (!a.zones || !b.zones || a.zones.some((z) => b.zones.includes(z)));
      if (a.cue.cue === b.cue.cue && shared) out.push([a, b]);
    }
  }
  return out;
}

/** The zones a query names that no camera has (a typo, or a zone deleted since). */
function missingZones(q) {
  const known = new Set(zoneNames());
  return (q.zones || []).filter((z) => !known.has(z));
}

function renderQueries() {
  $("#query-rows").replaceChildren(...state.queries.map((q) => {
    const reading = queryReading(q);
    return el("tr", { "data-query": q.id },
      el("td", {}, q.id), el("td", {}, q.text),
      el("td", { class: "reading" }, reading.text,
        reading.ignored.length ? el("div", { class: "warn-text" }, `ignored: ${reading.ignored.join(", ")}`) : null,
        reading.place.length ? el("div", { class: "warn-text place-hint" }, `"${reading.place.join(" ")}" is not read: draw a zone on the Live page and pick it for this query`) : null,
        missingZones(q).length ? el("div", { class: "warn-text zone-missing" }, `no camera has zone ${missingZones(q).join(", ")}: this query scores no one there`) : null),
      el("td", {}, q.threshold === null ? "auto" : fmt(q.threshold)),
      el("td", { class: `sev-${q.severity}` }, q.severity), el("td", {}, q.cameras ? q.cameras.join(", ") : "all"),
      el("td", {}, q.cooldown_s), el("td", {}, el("input", { type: "checkbox", checked: q.enabled, disabled: Boolean(q.fleet),
        "aria-label": `query ${q.id} enabled`,
        onchange: async (e) => { try { await api("PATCH", `/queries/${q.id}`, { enabled: e.target.checked }); await pages.queries(); } catch (err) { showError($("#query-error"), err); } } })),
      // a fleet query (README "Fleet") is changed at the hub only: read-only here
      q.fleet ? el("td", { class: "muted fleet", title: q.fleet }, "fleet query (read-only)")
        : el("td", {}, el("button", { onclick: () => editQuery(q), "aria-label": `edit query ${q.id}` }, "Edit"), " ",
          el("button", { "aria-label": `delete query ${q.id}`, onclick: async () => { if (confirm(`Delete "${q.text}"?`)) { await api("DELETE", `/queries/${q.id}`); await pages.queries(); } } }, "Delete")));
  }));
  if (!state.queries.length) $("#query-rows").append(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "No queries yet: add one above.")));
  const warnings = overlaps(state.queries).map(([a, b]) => el("li", {},
    `Queries ${a.id} ("${a.text}") and ${b.id} ("${b.text}") both read as ${a.cue.cue}: one person raises both. Disable one, or give them different cameras.`));
  $("#query-warnings").replaceChildren(...warnings);
  $("#query-warnings").hidden = warnings.length === 0;
}

function editQuery(q) {
  const form = $("#query-form");
  form.id.value = q ? q.id : ""; form.text.value = q ? q.text : "";
  form.threshold.value = q && q.threshold !== null ? q.threshold : "";
  form.severity.value = q ? q.severity : "warning"; form.cameras.value = q && q.cameras ? q.cameras.join(", ") : "";
  form.zones.value = q && q.zones ? q.zones.join(", ") : "";
  form.cooldown_s.value = q ? q.cooldown_s : 60; form.normal_prompts.value = q && q.normal_prompts ? q.normal_prompts.join("; ") : "";
  form.enabled.checked = q ? q.enabled : true;
  $("#query-form-title").textContent = q ? `Edit query ${q.id}` : "Add a query";
  scheduleTry();
}
$("#query-reset").addEventListener("click", () => editQuery(null));

function queryBody(form) {
  const list = (s, sep) => (s.trim() ? s.split(sep).map((x) => x.trim()).filter(Boolean) : null);
  return { text: form.text.value.trim(), threshold: form.threshold.value ? Number(form.threshold.value) : null,
    severity: form.severity.value, cameras: list(form.cameras.value, ","), zones: list(form.zones.value, ","), cooldown_s: Number(form.cooldown_s.value || 0),
    normal_prompts: list(form.normal_prompts.value, ";"), enabled: form.enabled.checked };
}

$("#query-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target; showError($("#query-error"), null);
  try {
    const body = queryBody(form);
    if (form.id.value) await api("PATCH", `/queries/${form.id.value}`, body);
    else await api("POST", "/queries", body);
    editQuery(null); await pages.queries();
  } catch (e) { showError($("#query-error"), e); }
});

let tryTimer = null;
function scheduleTry() {
  clearTimeout(tryTimer);
  if (state.capabilities.search === false) return;
  tryTimer = setTimeout(() => tryQuery().catch((e) => showError($("#try-summary"), e)), 400);
}
$("#query-form").addEventListener("input", (ev) => { if (ev.target.name !== "threshold") scheduleTry(); });
$("#try-rate").addEventListener("input", scheduleTry);

async function tryQuery() {
  const body = queryBody($("#query-form"));
  if (!body.text) return;
  const rate = Number($("#try-rate").value || 2);
  const r = await api("POST", "/queries/try", { text: body.text, normal_prompts: body.normal_prompts, cameras: body.cameras,
    zones: body.zones, threshold: body.threshold, alerts_per_hour: rate });
  const minutes = r.footage_hours * 60;
  let text = zoneNote(r);
  text += `${r.would_alert} of ${r.tracks} tracks in ${fmt(minutes, 0)} min would alert at ${fmt(r.threshold)}. `;
  if (r.suggested_threshold === null) text += "No tracks yet.";
  else if (r.footage_too_short) text += `${fmt(minutes, 0)} min of footage is too short to tell ${rate}/h: it needs at least ${fmt(r.footage_needed_hours * 60, 0)} min. The suggestion ${fmt(r.suggested_threshold, 3)} is the best score seen.`;
  else text += `${rate}/h would need threshold ${fmt(r.suggested_threshold, 3)}.`;
  $("#try-summary").textContent = text;
  $("#try-summary").dataset.suggested = r.suggested_threshold ?? "";
  $("#use-threshold").hidden = r.suggested_threshold === null;
  $("#use-threshold").textContent = r.suggested_threshold === null ? "" : `Use threshold ${fmt(r.suggested_threshold, 3)}`;
  $("#try-results").replaceChildren(...Object.entries(r.cameras).map(([cam, hits]) => el("div", {},
    el("h4", {}, cam), el("div", { class: "thumbs" }, ...hits.map(thumb)))));
}

$("#use-threshold").addEventListener("click", () => {
  const v = Number($("#try-summary").dataset.suggested);
  if (v > 0) $("#query-form").threshold.value = String(Math.min(0.99, Math.max(0.01, Math.round(v * 1000) / 1000)));
});

/** What an answer limited to zones says first: which zones counted, and those no camera has. */
function zoneNote(r) {
  if (!r.zones || !r.zones.length) return "";
  const warn = (r.warnings || []).length ? ` (${r.warnings.join("; ")})` : "";
  return `Only people seen in zone ${r.zones.join(", ")}${warn}: `;
}

function thumb(h) {
  return el("div", { class: `thumb${h.would_alert ? " hit" : ""}`, "data-track": h.track_id },
    el("img", { src: h.thumbnail, alt: `track ${h.track_id}` }), `#${h.track_id} ${fmt(h.score, 3)}`, el("br"),
    new Date(h.last_seen * 1000).toLocaleTimeString());
}

/* --- search ----------------------------------------------------------------------------------- */

pages.search = async function showSearch() {
  $("#page-search").hidden = false;
  await refreshLists();
  const off = state.capabilities.search === false;
  $("#search-off").hidden = !off;
  $("#search-off").textContent = off ? state.capabilities.search_reason || "" : "";
  $$("#search-form input, #search-form select, #search-form button").forEach((x) => (x.disabled = off));
  const zone = $("#search-form select[name=zone]"); const chosen = zone.value;
  zone.replaceChildren(el("option", { value: "" }, "anywhere"), ...zoneNames().map((n) => el("option", { value: n }, `zone ${n}`)));
  zone.value = zoneNames().includes(chosen) ? chosen : "";
};

$("#search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const params = new URLSearchParams({ text: f.get("text"), since: f.get("since") });
  if (f.get("camera")) params.set("camera", f.get("camera"));
  if (f.get("zone")) params.set("zone", f.get("zone"));
  showError($("#search-error"), null);
  try {
    const r = await api("GET", `/search?${params}`);
    $("#search-note").textContent = zoneNote(r).replace(/: $/, ".");
    $("#search-results").replaceChildren(...(r.results.length ? r.results.map((h) => { const t = thumb(h); t.prepend(el("div", {}, h.camera)); return t; })
      : [el("p", { class: "muted" }, "No tracks in that time.")]));
  } catch (e) { showError($("#search-error"), e); }
});

/* --- cameras ---------------------------------------------------------------------------------- */

pages.cameras = async function showCameras() {
  $("#page-cameras").hidden = false;
  await refreshLists();
  $("#camera-rows").replaceChildren(...state.cameras.map((c) => el("tr", { "data-camera": c.id, "data-enabled": c.enabled ? "1" : "0" },
    el("td", {}, c.id), el("td", { class: "uri" }, c.uri), el("td", { class: "state" }, c.enabled ? c.status?.state || "" : "disabled"),
    el("td", { class: "fps" }, fmt(c.status?.fps, 1)), el("td", { class: "drops" }, c.status?.drops ?? ""),
    el("td", { class: "reconnects" }, c.status?.reconnects ?? ""), el("td", { class: "error" }),
    el("td", {}, el("button", { "aria-label": `${c.enabled ? "disable" : "enable"} camera ${c.id}`, onclick: async () => { try { await api("PATCH", `/cameras/${encodeURIComponent(c.id)}`, { enabled: !c.enabled }); await pages.cameras(); } catch (e) { showError($("#camera-error"), e); } } }, c.enabled ? "Disable" : "Enable"), " ",
      el("button", { "aria-label": `remove camera ${c.id}`, onclick: async () => { if (confirm(`Remove camera ${c.id}?`)) { try { await api("DELETE", `/cameras/${encodeURIComponent(c.id)}`); await pages.cameras(); } catch (e) { showError($("#camera-error"), e); } } } }, "Remove")))));
  $("#cameras-empty").hidden = state.cameras.length > 0;
  renderStatuses();
};

function cameraBody(form) {
  const body = { id: form.id.value.trim(), uri: form.uri.value.trim(), loop: form.loop.checked };
  if (form.analysis_fps.value) body.analysis_fps = Number(form.analysis_fps.value);
  return body;
}

$("#camera-form").addEventListener("submit", async (ev) => {
  ev.preventDefault(); showError($("#camera-error"), null);
  try { await api("POST", "/cameras", cameraBody(ev.target)); ev.target.reset(); await pages.cameras(); } catch (e) { showError($("#camera-error"), e); }
});

$("#camera-test").addEventListener("click", async () => {
  const form = $("#camera-form"); $("#camera-error").textContent = "testing…";
  const img = $("#camera-snapshot"); img.hidden = true;
  try {
    const r = await api("POST", "/cameras/test", { uri: form.uri.value.trim() });
    if (r.ok) $("#camera-error").textContent = `Connected: ${r.width}×${r.height} in ${r.seconds} s.`;
    else showError($("#camera-error"), new ApiError(200, "Could not open the camera: check the address, the credentials and that it is on.", r.error));
    if (r.snapshot) { img.src = r.snapshot; img.alt = "snapshot from the camera"; img.hidden = false; }
  } catch (e) { showError($("#camera-error"), e); }
});

boot();
