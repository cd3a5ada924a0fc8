// Small SVG charts for the ledger dashboard (no dependencies).
// lineChart(el, series, opts): series = [{name, points: [[x, y|null], ...]}]; null y = gap.
// barChart(el, bars, opts): bars = [{label, value}], horizontal bars sorted as given.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2",
    "#db2777", "#65a30d", "#4b5563", "#ea580c"];

  function svg(tag, attrs, parent) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, attrs) {
    const node = svg("text", Object.assign({ x, y }, attrs || {}), parent);
    node.textContent = content;
    return node;
  }

  function niceTicks(lo, hi, count) {
    if (!isFinite(lo) || !isFinite(hi)) return [];
    if (lo === hi) { lo -= 1; hi += 1; }
    const raw = (hi - lo) / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(t);
    return ticks;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "";
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(1);
    return +v.toPrecision(4) + "";
  }

  function fmtTime(t) {
    const d = new Date(t * 1000);
    return d.toISOString().substring(11, 19);
  }

  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v !== null && isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
    return [lo, hi];
  }

  function lineChart(el, series, opts) {
    opts = opts || {};
    const W = opts.width || 460, H = opts.height || 240;
    const m = { l: 52, r: 12, t: opts.title ? 22 : 8, b: series.length > 1 ? 44 : 26 };
    el.textContent = "";
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
      "data-series": series.length, "aria-label": opts.title || "chart" }, el);
    if (opts.title) text(root, m.l, 14, opts.title, { class: "title" });
    const xs = [], ys = [];
    for (const s of series) for (const [x, y] of s.points) { xs.push(x); ys.push(y); }
    let [x0, x1] = extent(xs), [y0, y1] = extent(ys);
    if (!isFinite(x0)) { text(root, W / 2, H / 2, "no data", { "text-anchor": "middle" }); return root; }
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (!isFinite(y0)) { y0 = 0; y1 = 1; }
    if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    const px = (x) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
    const py = (y) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
    for (const t of niceTicks(y0, y1, 5)) {
      svg("line", { x1: m.l, x2: W - m.r, y1: py(t), y2: py(t), class: "grid" }, root);
      text(root, m.l - 4, py(t) + 3, fmt(t), { "text-anchor": "end" });
    }
    for (const t of niceTicks(x0, x1, 5)) {
      text(root, px(t), H - m.b + 13, opts.time ? fmtTime(t) : fmt(t), { "text-anchor": "middle" });
    }
    svg("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: "axis" }, root);
    svg("line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: "axis" }, root);
    series.forEach((s, i) => {
      const color = s.color || PALETTE[i % PALETTE.length];
      let d = "", pen = false;
      for (const [x, y] of s.points) {
        if (y === null || !isFinite(y)) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`;
        pen = true;
      }
      if (d) {
        const path = svg("path", { d, fill: "none", stroke: color, "stroke-width": 1.6,
          class: "series", "data-name": s.name }, root);
        svg("title", {}, path).textContent = s.name;
      }
      if (s.points.length === 1 && s.points[0][1] !== null) {
        svg("circle", { cx: px(s.points[0][0]), cy: py(s.points[0][1]), r: 3, fill: color }, root);
      }
      if (series.length > 1) {
        const lx = m.l + (i % 4) * ((W - m.l) / 4), ly = H - 20 + Math.floor(i / 4) * 11;
        svg("rect", { x: lx, y: ly - 7, width: 8, height: 8, fill: color }, root);
        text(root, lx + 11, ly, String(s.name).substring(0, 22));
      }
    });
    return root;
  }

  function barChart(el, bars, opts) {
    opts = opts || {};
    const W = opts.width || 560, row = 22, m = { l: 170, r: 60, t: opts.title ? 24 : 6, b: 6 };
    const H = m.t + m.b + Math.max(1, bars.length) * row;
    el.textContent = "";
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
      "aria-label": opts.title || "bar chart" }, el);
    if (opts.title) text(root, 4, 15, opts.title, { class: "title" });
    if (!bars.length) { text(root, W / 2, H / 2 + 3, "no data", { "text-anchor": "middle" }); return root; }
    const hi = Math.max(...bars.map((b) => Math.abs(b.value) || 0), 1e-12);
    bars.forEach((b, i) => {
      const y = m.t + i * row;
      const w = ((Math.abs(b.value) || 0) / hi) * (W - m.l - m.r);
      text(root, m.l - 6, y + 14, String(b.label).substring(0, 28), { "text-anchor": "end" });
      svg("rect", { x: m.l, y: y + 4, width: Math.max(1, w), height: row - 8,
        fill: b.color || PALETTE[0], class: "bar" }, root);
      text(root, m.l + w + 4, y + 14, opts.format ? opts.format(b.value) : fmt(b.value));
    });
    return root;
  }

  return { lineChart, barChart, fmt, PALETTE };
})();
