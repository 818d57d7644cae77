/* Watchword console, the Live page: one tile per camera, each saying honestly how old its picture is. */
"use strict";

const DROPS_WARNING = 10;       // frames dropped since start above which a tile warns
const FRAME_STALE_S = 5;        // a camera whose last frame is older than this is stale

function tileSrc(id) { return `/cameras/${encodeURIComponent(id)}/live.mjpg?fps=3&t=${Date.now()}`; }

function cameraTile(c) {
  const id = c.id;
  const img = el("img", { alt: `live view of camera ${id}` });
  const tile = el("div", { class: "tile", "data-camera": id },
    el("div", { class: "frame-box" }, img, zoneOverlay(c),
      el("div", { class: "placeholder", hidden: true }),
      el("div", { class: "stale-note", hidden: true }),
      el("span", { class: "stamp" })),
    el("div", { class: "meta" }, el("h2", { class: "cam-name" }, id), el("span", { class: "state" }), el("span", { class: "fps" }),
      el("span", { class: "drops" }), el("span", { class: "reconnects" }),
      el("button", { type: "button", class: "zones-button", "aria-expanded": "false", "aria-label": `zones of camera ${id}`,
        onclick: (ev) => toggleZoneEditor(tile, c, ev.currentTarget) }, "Zones")),
    el("div", { class: "tile-error" }));
  if (!c.enabled) {
    tile.classList.add("disabled");
    showPlaceholder(tile, "Camera disabled.", "Enable it on the Cameras page to watch and analyse it.");
    return tile;
  }
  img.addEventListener("error", () => {  // the stream broke: try again while the feed is live
    tile.dataset.broken = "1";
    setTimeout(() => { if (img.isConnected && state.conn.up) img.src = tileSrc(id); }, 2000);
  });
  img.addEventListener("load", () => { tile.dataset.broken = ""; });
  img.src = tileSrc(id);
  return tile;
}

function showPlaceholder(tile, title, text) {
  const box = $(".placeholder", tile);
  box.hidden = !title;
  if (title) box.replaceChildren(el("strong", {}, title), el("br"), text);
}

function reconnectTiles() {
  for (const tile of $$(".tile:not(.disabled)")) $("img", tile).src = tileSrc(tile.dataset.camera);
}

pages.live = async function showLive() {
  $("#page-live").hidden = false;
  await refreshLists();
  // MJPEG: the agent pushes each analysed frame (a few a second) while the tile is shown
  $("#tiles").replaceChildren(...state.cameras.map(cameraTile));
  if (!state.cameras.length) $("#tiles").append(el("p", { class: "muted" }, "No cameras yet: add one on the Cameras page."));
  renderStatuses();
};

/** A camera's state as the operator should read it: [label, css class, short problem or ""]. */
function cameraState(s, enabled) {
  if (!enabled) return ["disabled", "state-disabled", ""];
  if (!state.conn.up) return ["unknown (not live)", "state-unknown", ""];
  if (!s || !s.state) return ["starting", "state-starting", ""];
  if (s.state === "failed") return ["failed", "state-failed", "The camera cannot be opened. Check its address and that it is on."];
  if (s.state === "reconnecting") return ["reconnecting", "state-reconnecting", "The stream dropped; the agent is reconnecting."];
  if (s.state === "running" && s.last_frame_age_s > FRAME_STALE_S) return ["no frames", "state-reconnecting", `No frame for ${Math.round(s.last_frame_age_s)} s.`];
  if (s.state === "running" && (s.drops || 0) >= DROPS_WARNING) return ["running, dropping frames", "state-warning", `${s.drops} frames dropped: the agent cannot keep up at this rate.`];
  return [s.state, `state-${s.state}`, ""];
}

function renderStatuses() {
  const live = state.conn.up;
  for (const tile of $$(".tile")) {
    const id = tile.dataset.camera;
    const s = state.statuses[id] || {};
    const enabled = !tile.classList.contains("disabled");
    const [label, cls, problem] = cameraState(s, enabled);
    const st = $(".state", tile); st.textContent = label; st.className = `state ${cls}`;
    if (!enabled) continue;
    $(".fps", tile).textContent = `${fmt(s.fps, 1) || "–"} fps`;
    const drops = $(".drops", tile); drops.textContent = `drops ${s.drops ?? 0}`;
    drops.classList.toggle("warn", (s.drops || 0) >= DROPS_WARNING);
    $(".reconnects", tile).textContent = `reconnects ${s.reconnects ?? 0}`;
    if (s.frame_at) tile.dataset.frameAt = String(s.frame_at);
    const frameAt = Number(tile.dataset.frameAt || 0);
    $(".stamp", tile).textContent = frameAt ? `frame ${fmtClock(frameAt)}` : "no frame yet";
    const stale = !live || (s.last_frame_age_s ?? 0) > FRAME_STALE_S;
    tile.classList.toggle("stale", stale);
    const note = $(".stale-note", tile);
    note.hidden = !stale;
    if (stale) note.textContent = `stale since ${fmtClock(live ? frameAt : state.conn.lostAt || frameAt)}`;
    const failed = live && s.state === "failed";
    showPlaceholder(tile, failed ? "Camera failed." : "", failed ? problem : "");
    const box = $(".tile-error", tile);
    if (problem && s.error) {
      if (box.dataset.raw !== s.error) {
        box.dataset.raw = s.error;
        box.replaceChildren(el("span", {}, problem), " ", el("details", {}, el("summary", {}, "details"), el("pre", {}, s.error)));
      }
    } else if (problem) { box.dataset.raw = ""; box.replaceChildren(el("span", {}, problem)); } else { box.dataset.raw = ""; box.replaceChildren(); }
  }
  for (const row of $$("#camera-rows tr")) {
    const s = state.statuses[row.dataset.camera];
    if (!s || row.dataset.enabled !== "1") continue;
    const [label, cls, problem] = cameraState(s, true);
    const st = $(".state", row); st.textContent = label; st.className = `state ${cls}`;
    $(".fps", row).textContent = fmt(s.fps, 1);
    const drops = $(".drops", row); drops.textContent = s.drops; drops.classList.toggle("warn", (s.drops || 0) >= DROPS_WARNING);
    $(".reconnects", row).textContent = s.reconnects;
    const box = $(".error", row);
    if (box.dataset.raw !== (s.error || "")) {
      box.dataset.raw = s.error || "";
      box.replaceChildren(...(s.error ? [el("span", {}, problem || "Error."), " ", el("details", {}, el("summary", {}, "details"), el("pre", {}, s.error))] : []));
    }
  }
}
