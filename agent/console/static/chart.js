/* A small line chart on a canvas (no library): score over time with the threshold line. */
"use strict";
window.drawScoreChart = function (canvas, points, threshold) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 32;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#0d1014"; ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#39414c"; ctx.fillStyle = "#8a939e"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    const y = h - pad - v * (h - 2 * pad);
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 8, y); ctx.stroke();
    ctx.fillText(v.toFixed(2), 2, y + 4);
  }
  if (!points || points.length === 0) { ctx.fillText("no samples", w / 2 - 30, h / 2); return 0; }
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1e-3);
  const x = (t) => pad + (t - t0) / (t1 - t0) * (w - pad - 8);
  const y = (v) => h - pad - Math.max(0, Math.min(1, v)) * (h - 2 * pad);
  if (threshold != null) {
    ctx.strokeStyle = "#ef4444"; ctx.setLineDash([4, 4]);
    ctx.beginPath(); ctx.moveTo(pad, y(threshold)); ctx.lineTo(w - 8, y(threshold)); ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.strokeStyle = "#3b82f6"; ctx.lineWidth = 2; ctx.beginPath();
  points.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
  ctx.stroke();
  ctx.fillStyle = "#3b82f6";
  for (const [t, v] of points) { ctx.beginPath(); ctx.arc(x(t), y(v), 2.5, 0, 7); ctx.fill(); }
  ctx.fillStyle = "#8a939e";
  ctx.fillText((t1 - t0).toFixed(1) + " s", w - 50, h - 8);
  canvas.dataset.points = String(points.length);
  return points.length;
};
