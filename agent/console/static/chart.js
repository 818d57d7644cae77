/* A small line chart on a canvas (no library): score over time, with a time axis in seconds from the
   moment the alert fired, a marker at that moment and the effective threshold as a dashed line. */
"use strict";
window.drawScoreChart = function (canvas, points, threshold, options = {}) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 34, right = 10, top = 10, bottom = 34;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#0d1014"; ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#39414c"; ctx.fillStyle = "#b4bcc6"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
  const y = (v) => h - bottom - Math.max(0, Math.min(1, v)) * (h - top - bottom);
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(2), 2, y(v) + 4);
  }
  canvas.dataset.points = String(points ? points.length : 0);
  canvas.dataset.threshold = threshold == null ? "" : String(threshold);
  canvas.dataset.fired = "";
  if (!points || points.length === 0) { ctx.fillText("no samples", w / 2 - 30, h / 2); return 0; }
  const fired = options.firedAt ?? null;
  let t0 = points[0][0], t1 = points[points.length - 1][0];
  if (fired !== null) { t0 = Math.min(t0, fired); t1 = Math.max(t1, fired); }
  t1 = Math.max(t1, t0 + 1e-3);
  const origin = fired ?? t0;
  const x = (t) => left + (t - t0) / (t1 - t0) * (w - left - right);
  // time axis: about six ticks at a round step, labelled in seconds from the firing
  const span = t1 - t0, raw = span / 6, mag = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  ctx.fillStyle = "#b4bcc6";
  for (let t = Math.ceil((t0 - origin) / step) * step; t <= t1 - origin + 1e-9; t += step) {
    const px = x(origin + t);
    ctx.beginPath(); ctx.moveTo(px, h - bottom); ctx.lineTo(px, h - bottom + 4); ctx.stroke();
    const label = `${t > 0 ? "+" : ""}${Number(t.toFixed(step < 1 ? 1 : 0))}`;
    ctx.fillText(label, px - ctx.measureText(label).width / 2, h - bottom + 15);
  }
  ctx.fillText("seconds from the alert", w / 2 - 55, h - 4);
  if (threshold != null) {
    ctx.strokeStyle = "#ff8080"; ctx.setLineDash([4, 4]);
    ctx.beginPath(); ctx.moveTo(left, y(threshold)); ctx.lineTo(w - right, y(threshold)); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#ff8080";
    ctx.fillText(`threshold ${threshold.toFixed(2)}${options.auto ? " (auto)" : ""}`, left + 4, y(threshold) - 4);
  }
  if (fired !== null) {
    ctx.strokeStyle = "#fbbf24"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x(fired), top); ctx.lineTo(x(fired), h - bottom); ctx.stroke();
    ctx.fillStyle = "#fbbf24"; ctx.fillText("fired", Math.min(x(fired) + 3, w - 30), top + 10);
    canvas.dataset.fired = String(fired);
  }
  ctx.strokeStyle = "#3b82f6"; ctx.lineWidth = 2; ctx.beginPath();
  points.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
  ctx.stroke();
  ctx.fillStyle = "#3b82f6";
  for (const [t, v] of points) { ctx.beginPath(); ctx.arc(x(t), y(v), 2.5, 0, 7); ctx.fill(); }
  return points.length;
};
