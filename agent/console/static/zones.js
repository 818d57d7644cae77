/* Watchword console, zones: polygons per camera drawn over the live image, and their editor.
   Points are fractions of the image (x, y from 0 at the top left to 1 at the bottom right), as in
   the YAML's cameras[].zones; saved with PATCH /cameras/{id} {zones: [...]}. */
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The zones of a camera (and the polygon being drawn) as an SVG laid over its image. */
function drawZones(svg, zones, draft) {
  svg.replaceChildren(...zones.map((z) => {
    const g = svgEl("g", { class: "zone", "data-zone": z.name });
    g.append(svgEl("polygon", { points: z.points.map((p) => p.join(",")).join(" ") }));
    const [x, y] = z.points[0];
    g.append(svgEl("text", { x: String(Math.min(x + 0.01, 0.9)), y: String(Math.max(y + 0.04, 0.05)) }, z.name));
    return g;
  }));
  if (draft && draft.length) {
    svg.append(svgEl("polyline", { class: "zone-draft", points: draft.map((p) => p.join(",")).join(" ") }));
    for (const [x, y] of draft) svg.append(svgEl("circle", { class: "zone-point", cx: String(x), cy: String(y), r: "0.008" }));
  }
}

function zoneOverlay(c) {
  const svg = svgEl("svg", { class: "zones", viewBox: "0 0 1 1", preserveAspectRatio: "none", "aria-hidden": "true" });
  drawZones(svg, c.zones || [], null);
  return svg;
}

/** The editor under a tile: click the image to add points, name the zone, save; delete zones. */
function zoneEditor(tile, c) {
  const svg = $("svg.zones", tile);
  const draft = [];
  const name = el("input", { name: "zone-name", placeholder: "entrance", maxlength: "64", "aria-label": `name of the new zone on camera ${c.id}` });
  const error = el("div", { class: "error", role: "alert" });
  const list = el("ul", { class: "zone-list" });
  const redraw = () => drawZones(svg, c.zones || [], draft);
  const save = async (zones) => {
    showError(error, null);
    try {
      const saved = await api("PATCH", `/cameras/${encodeURIComponent(c.id)}`, { zones });
      c.zones = saved.zones || [];
      draft.length = 0; redraw(); renderList();
    } catch (e) { showError(error, e); }
  };
  function renderList() {
    list.replaceChildren(...(c.zones || []).map((z) => el("li", { "data-zone": z.name }, `${z.name} (${z.points.length} points) `,
      el("button", { type: "button", "aria-label": `delete zone ${z.name} of camera ${c.id}`,
        onclick: () => save((c.zones || []).filter((o) => o.name !== z.name)) }, "Delete"))));
    if (!(c.zones || []).length) list.append(el("li", { class: "muted" }, "No zones yet."));
  }
  svg.addEventListener("click", (ev) => {
    const r = svg.getBoundingClientRect();
    const x = Math.round(((ev.clientX - r.left) / r.width) * 1000) / 1000;
    const y = Math.round(((ev.clientY - r.top) / r.height) * 1000) / 1000;
    draft.push([Math.min(1, Math.max(0, x)), Math.min(1, Math.max(0, y))]);
    redraw();
  });
  const panel = el("div", { class: "zone-editor" },
    el("p", { class: "muted" }, "Click the image to place at least 3 corners; a person is in the zone while their feet are."),
    el("label", {}, "Zone name ", name), " ",
    el("button", { type: "button", class: "zone-save", onclick: () => {
      const zoneName = name.value.trim();
      if (draft.length < 3) { showError(error, new ApiError(0, "Place at least 3 points on the image first.")); return; }
      if (!zoneName) { showError(error, new ApiError(0, "Give the zone a name.")); return; }
      save([...(c.zones || []).filter((o) => o.name !== zoneName), { name: zoneName, points: draft.slice() }]);
      name.value = "";
    } }, "Save zone"), " ",
    el("button", { type: "button", onclick: () => { draft.length = 0; redraw(); } }, "Clear points"),
    error, list);
  renderList();
  return panel;
}

function toggleZoneEditor(tile, c, button) {
  const open = tile.classList.toggle("editing-zones");
  button.setAttribute("aria-expanded", open ? "true" : "false");
  const old = $(".zone-editor", tile);
  if (old) old.remove();
  if (open) tile.append(zoneEditor(tile, c));
  else drawZones($("svg.zones", tile), c.zones || [], null);
}

/** Every zone name of every camera, for the query form's list. */
function zoneNames() {
  return [...new Set(state.cameras.flatMap((c) => (c.zones || []).map((z) => z.name)))].sort();
}
