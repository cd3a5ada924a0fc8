// ledger dashboard: a small single-page app over the read-only JSON API.
// Every value from the store is put in the page as text (never as HTML).
"use strict";

const app = document.getElementById("app");
const live = document.getElementById("live-indicator");
let timers = [];
let routeToken = 0;

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.substring(2), v);
    else if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;  // CSSOM: allowed by the CSP
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

// Append nodes, flattening nested lists and skipping null (optional sections).
function append(parent, ...nodes) {
  for (const n of nodes.flat(Infinity)) if (n !== null && n !== undefined) parent.append(n);
}
function every(ms, fn) { timers.push(setInterval(fn, ms)); }
function clearTimers() { timers.forEach(clearInterval); timers = []; live.textContent = ""; }

function badge(status) { return h("span", { class: `badge ${status}` }, status); }
function num(v) { return v === null || v === undefined ? "" : Charts.fmt(v); }
function when(iso) { return iso ? iso.replace("T", " ").substring(0, 19) : ""; }
function dur(s) {
  if (s === null || s === undefined) return "";
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
function short(id) { return id ? id.substring(0, 12) : ""; }
function runLink(id, label) { return h("a", { href: `#/run/${id}` }, label || short(id)); }
function showError(where, err) {
  where.textContent = "";
  where.appendChild(h("div", { class: "error" }, String(err.message || err)));
}
function setNav(name) {
  document.querySelectorAll("header nav a").forEach((a) =>
    a.classList.toggle("active", a.dataset.nav === name));
}
function params(hash) {
  const i = hash.indexOf("?");
  return new URLSearchParams(i >= 0 ? hash.substring(i + 1) : "");
}
function table(columns, rows, rowAttrs) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c.label)))),
    h("tbody", {}, rows.map((r, i) => h("tr", rowAttrs ? rowAttrs(r, i) : {},
      columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.cell(r)))))));
}

// -- runs table ---------------------------------------------------------------------------

const runsState = { q: "", project: "", experiment: "", status: "", sort: "start_time", order: "desc", offset: 0,
  selected: new Set() };

async function runsPage(token) {
  setNav("runs");
  const facets = await api("/api/facets");
  if (token !== routeToken) return;
  const search = h("input", { id: "search", type: "search", placeholder: "Search name, id, experiment, user…",
    value: runsState.q, size: 36 });
  const project = h("select", { id: "filter-project" }, h("option", { value: "" }, "all projects"),
    facets.projects.map((p) => h("option", { value: p, selected: p === runsState.project }, p)));
  const experiment = h("select", { id: "filter-experiment" }, h("option", { value: "" }, "all experiments"),
    [...new Set(facets.experiments.filter((e) => !runsState.project || e.project === runsState.project)
      .map((e) => e.experiment))].map((x) => h("option", { value: x, selected: x === runsState.experiment }, x)));
  const status = h("select", { id: "filter-status" }, h("option", { value: "" }, "any status"),
    ["running", "finished", "failed", "killed", "stalled"].map((s) =>
      h("option", { value: s, selected: s === runsState.status }, s)));
  const compare = h("button", { id: "compare", class: "primary", disabled: runsState.selected.size < 2,
    onclick: () => { location.hash = `#/compare?ids=${[...runsState.selected].join(",")}`; } },
    "Compare selected");
  const count = h("span", { class: "muted", id: "run-count" });
  const holder = h("div", { id: "runs-table" });
  const pager = h("div", { class: "pager" });
  app.textContent = "";
  append(app, h("h1", {}, "Runs"), h("div", { class: "toolbar" }, search, project, experiment, status, compare, count),
    holder, pager);

  let debounce = null;
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { runsState.q = search.value; runsState.offset = 0; load(); }, 200);
  });
  project.addEventListener("change", () => {
    runsState.project = project.value; runsState.experiment = ""; runsState.offset = 0; route();
  });
  experiment.addEventListener("change", () => { runsState.experiment = experiment.value; runsState.offset = 0; load(); });
  status.addEventListener("change", () => { runsState.status = status.value; runsState.offset = 0; load(); });

  const columns = [
    { key: null, label: "", cell: (r) => h("input", { type: "checkbox", class: "pick", checked: runsState.selected.has(r.run_id),
      onchange: (e) => { e.target.checked ? runsState.selected.add(r.run_id) : runsState.selected.delete(r.run_id);
        compare.disabled = runsState.selected.size < 2; } }) },
    { key: "name", label: "name", cell: (r) => runLink(r.run_id, r.name || short(r.run_id)) },
    { key: "status", label: "status", cell: (r) => badge(r.status) },
    { key: "project", label: "project", cell: (r) => r.project },
    { key: "experiment", label: "experiment", cell: (r) => r.experiment },
    { key: "start_time", label: "started", cell: (r) => when(r.start_time) },
    { key: "duration_s", label: "duration", num: true, cell: (r) => dur(r.duration_s) },
    { key: "user", label: "user", cell: (r) => r.user || "" },
    { key: null, label: "id", cell: (r) => h("span", { class: "mono" }, short(r.run_id)) },
  ];

  async function load() {
    const q = new URLSearchParams({ q: runsState.q, project: runsState.project, experiment: runsState.experiment, status: runsState.status,
      sort: runsState.sort, order: runsState.order, offset: runsState.offset, limit: 100 });
    let data;
    try { data = await api(`/api/runs?${q}`); } catch (err) { showError(holder, err); return; }
    if (token !== routeToken) return;
    const head = h("tr", {}, columns.map((c) => {
      const sorted = c.key && c.key === runsState.sort;
      return h("th", { class: `${c.key ? "sortable" : ""} ${sorted ? "sorted" : ""} ${sorted && runsState.order === "asc" ? "asc" : ""}`,
        "data-sort": c.key || null,
        onclick: c.key ? () => {
          if (runsState.sort === c.key) runsState.order = runsState.order === "asc" ? "desc" : "asc";
          else { runsState.sort = c.key; runsState.order = c.key === "name" ? "asc" : "desc"; }
          load();
        } : null }, c.label);
    }));
    const body = h("tbody", {}, data.rows.map((r) => h("tr", { "data-run": r.run_id, "data-status": r.status },
      columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.cell(r))))));
    holder.textContent = "";
    holder.appendChild(h("table", { id: "runs" }, h("thead", {}, head), body));
    count.textContent = `${data.total} run${data.total === 1 ? "" : "s"}`;
    pager.textContent = "";
    if (data.total > 100) {
      pager.append(
        h("button", { disabled: runsState.offset === 0, onclick: () => { runsState.offset -= 100; load(); } }, "‹ prev"),
        h("span", { class: "muted" }, `${runsState.offset + 1}–${Math.min(data.total, runsState.offset + 100)} of ${data.total}`),
        h("button", { disabled: runsState.offset + 100 >= data.total, onclick: () => { runsState.offset += 100; load(); } }, "next ›"));
    }
    live.textContent = data.rows.some((r) => r.status === "running") ? "● live" : "";
  }
  await load();
  every(3000, () => { if (document.activeElement !== search) load(); });
}

// -- run page ---------------------------------------------------------------------------------

async function runPage(token, runId) {
  setNav("runs");
  const data = await api(`/api/run/${encodeURIComponent(runId)}`);
  if (token !== routeToken) return;
  const r = data.run;
  let env = {};
  try { env = r.environment ? JSON.parse(r.environment) : {}; } catch (e) { env = {}; }
  const stepCell = h("span", { id: "run-step" }, "");
  const statusCell = h("span", { id: "run-status" }, badge(r.status));
  const heartbeat = h("span", { id: "run-heartbeat" }, when(r.last_heartbeat));
  const progressBar = h("span", { id: "run-progress" });
  const facts = [
    ["run id", h("span", { class: "mono" }, r.run_id)], ["status", statusCell], ["step", stepCell],
    ["progress", progressBar],
    ["project / experiment", `${r.project} / ${r.experiment || ""}`], ["started", when(r.start_time)],
    ["ended", when(r.end_time)], ["duration", h("span", { id: "run-duration" }, dur(r.duration_s))],
    ["last heartbeat", heartbeat], ["user@host", `${r.user || ""}@${r.host || ""}`],
    ["command", r.command ? h("span", { class: "mono" }, r.command) : ""],
    ["git", r.git_commit ? `${r.git_branch || ""} ${r.git_commit.substring(0, 10)}${r.git_dirty ? " (dirty)" : ""}` : ""],
    ["python", r.python_version || ""], ["parent", r.parent_run_id ? runLink(r.parent_run_id) : ""],
    ["message", r.message || ""],
  ];
  const costTotals = data.costs.reduce((acc, c) => {
    acc.usd += c.cost_usd || 0; acc.kwh += c.energy_kwh || 0; acc.kg += c.emissions_kg || 0; return acc;
  }, { usd: 0, kwh: 0, kg: 0 });
  if (data.costs.length) {
    facts.push(["cost", `$${costTotals.usd.toFixed(2)}`], ["energy", `${num(costTotals.kwh)} kWh`],
      ["emissions", `${num(costTotals.kg)} kg CO2e`]);
  }
  const metricsGrid = h("div", { class: "grid", id: "metric-charts" });
  const systemGrid = h("div", { class: "grid", id: "system-charts" });
  app.textContent = "";
  append(app,
    h("h1", {}, r.name || short(r.run_id), " ", h("span", { id: "title-status" }, badge(r.status))),
    h("div", { class: "card kv" }, facts.filter(([, v]) => v !== "" && v !== null)
      .flatMap(([k, v]) => [h("div", {}, k), h("div", {}, v)])),
    h("h2", {}, "Metrics"), metricsGrid,
    h("h2", {}, "System"), systemGrid,
    h("div", { class: "grid" },
      h("div", {}, h("h2", {}, "Params"), table([{ label: "key", cell: (p) => p.key }, { label: "value", cell: (p) => p.value }], data.params)),
      h("div", {}, h("h2", {}, "Tags"), table([{ label: "key", cell: (p) => p.key }, { label: "value", cell: (p) => p.value }], data.tags))),
    h("h2", {}, "Latest metrics"),
    table([{ label: "key", cell: (m) => m.key }, { label: "value", num: true, cell: (m) => m.value === null ? "NaN/inf" : num(m.value) },
      { label: "step", num: true, cell: (m) => m.step }, { label: "min", num: true, cell: (m) => num(m.min_value) },
      { label: "max", num: true, cell: (m) => num(m.max_value) }, { label: "points", num: true, cell: (m) => m.n_points }], data.metrics),
    h("h2", {}, "Artifacts"),
    data.artifacts.length ? table([
      { label: "path", cell: (a) => h("a", { href: `/artifact/${encodeURIComponent(r.run_id)}?path=${encodeURIComponent(a.path)}`, download: "" }, a.path) },
      { label: "size", num: true, cell: (a) => a.size }, { label: "sha256", cell: (a) => h("span", { class: "mono" }, (a.sha256 || "").substring(0, 16)) }],
      data.artifacts) : h("p", { class: "muted" }, "none"),
    data.datasets.length ? [h("h2", {}, "Data sets"), table([{ label: "name", cell: (d) => d.name }, { label: "context", cell: (d) => d.context || "" },
      { label: "rows", num: true, cell: (d) => d.rows }, { label: "sha256", cell: (d) => h("span", { class: "mono" }, (d.sha256 || "").substring(0, 16)) }], data.datasets)] : null,
    data.costs.length ? [h("h2", {}, "Costs and emissions"), table([{ label: "kind", cell: (c) => c.kind }, { label: "source", cell: (c) => c.source },
      { label: "cost $", num: true, cell: (c) => num(c.cost_usd) }, { label: "kWh", num: true, cell: (c) => num(c.energy_kwh) },
      { label: "kg CO2e", num: true, cell: (c) => num(c.emissions_kg) }, { label: "measured", cell: (c) => c.measured ? "yes" : "estimate" }], data.costs)] : null,
    data.children.length ? [h("h2", {}, "Child runs"), table([{ label: "name", cell: (c) => runLink(c.run_id, c.name) }, { label: "status", cell: (c) => badge(c.status) }], data.children)] : null,
    data.notes.length ? [h("h2", {}, "Notes"), table([{ label: "time", cell: (n) => when(n.ts) }, { label: "note", cell: (n) => n.message }], data.notes)] : null,
    Object.keys(env).length ? [h("h2", {}, "Environment"), h("pre", { class: "card mono" }, JSON.stringify(env, null, 2))] : null,
  );

  const series = {};
  let lastStep = -1;
  const charts = {};
  function draw() {
    for (const [key, points] of Object.entries(series)) {
      if (!charts[key]) { charts[key] = h("div", { class: "card", "data-metric": key }); metricsGrid.appendChild(charts[key]); }
      Charts.lineChart(charts[key], [{ name: key, points }], { title: key });
    }
    if (!Object.keys(series).length) metricsGrid.textContent = "no metrics logged";
  }
  async function loadMetrics() {
    const fresh = await api(`/api/run/${encodeURIComponent(runId)}/metrics?after=${lastStep}`);
    if (token !== routeToken) return;
    for (const [key, points] of Object.entries(fresh)) {
      series[key] = (series[key] || []).concat(points);
      for (const [step] of points) if (step > lastStep) lastStep = step;
    }
    if (Object.keys(fresh).length || lastStep < 0) draw();
  }
  async function loadSystem() {
    const sys = await api(`/api/run/${encodeURIComponent(runId)}/system`);
    if (token !== routeToken) return;
    systemGrid.textContent = "";
    const names = Object.keys(sys);
    if (!names.length) { systemGrid.appendChild(h("p", { class: "muted" }, "no system samples")); return; }
    for (const name of names) {
      const box = h("div", { class: "card" });
      systemGrid.appendChild(box);
      Charts.lineChart(box, [{ name, points: sys[name] }], { title: name, time: true });
    }
  }
  async function loadProgress() {
    const p = await api(`/api/run/${encodeURIComponent(runId)}/progress`);
    if (token !== routeToken) return;
    stepCell.textContent = p.step === null ? "" : (p.total_steps ? `${p.step} / ${p.total_steps}` : String(p.step));
    statusCell.textContent = ""; statusCell.appendChild(badge(p.status));
    const title = document.getElementById("title-status");
    if (title) { title.textContent = ""; title.appendChild(badge(p.status)); }
    heartbeat.textContent = when(p.last_heartbeat);
    document.getElementById("run-duration").textContent = dur(p.duration_s);
    progressBar.textContent = "";
    if (p.percent !== null) {
      progressBar.append(h("span", { class: "progress" }, h("span", { style: `width:${p.percent}%` })),
        ` ${p.percent}%`, p.eta_s !== null && p.eta_s > 0 ? ` · ETA ${dur(p.eta_s)}` : "");
    }
    return p.status;
  }
  await Promise.all([loadMetrics(), loadSystem(), loadProgress()]);
  if (r.status === "running" || r.status === "stalled") {
    live.textContent = "● live";
    every(2000, async () => {
      try {
        const status = await loadProgress();
        await loadMetrics();
        if (status !== "running" && status !== "stalled") { clearTimers(); loadSystem(); }
      } catch (err) { live.textContent = "offline"; }
    });
    every(10000, () => loadSystem().catch(() => {}));
  }
}

// -- compare ------------------------------------------------------------------------------------

async function comparePage(token, query) {
  setNav("runs");
  const ids = (query.get("ids") || "").split(",").filter(Boolean);
  const data = await api(`/api/compare?ids=${encodeURIComponent(ids.join(","))}`);
  if (token !== routeToken) return;
  const names = data.runs.map((r) => r.name || short(r.run_id));
  const keys = new Set();
  for (const curves of Object.values(data.curves)) Object.keys(curves).forEach((k) => keys.add(k));
  const grid = h("div", { class: "grid", id: "compare-charts" });
  const onlyDiff = h("input", { type: "checkbox", id: "only-diff" });
  const diffHolder = h("div");
  function drawDiff() {
    const rows = onlyDiff.checked ? data.diff.filter((d) => d.differs) : data.diff;
    diffHolder.textContent = "";
    diffHolder.appendChild(table(
      [{ label: "", cell: (d) => d.kind }, { label: "key", cell: (d) => d.key }]
        .concat(names.map((n, i) => ({ label: n, cell: (d) => d.values[i] === null ? "—" : (typeof d.values[i] === "number" ? num(d.values[i]) : d.values[i]) }))),
      rows, (d) => ({ class: d.differs ? "diff" : "" })));
  }
  onlyDiff.addEventListener("change", drawDiff);
  app.textContent = "";
  append(app, h("h1", {}, `Compare ${ids.length} runs`),
    h("p", {}, data.runs.map((r, i) => [i ? " · " : "", runLink(r.run_id, r.name || short(r.run_id)), " ", badge(r.status)])),
    grid, h("h2", {}, "Params and metrics"), h("label", {}, onlyDiff, " only differences"), diffHolder);
  for (const key of [...keys].sort()) {
    const box = h("div", { class: "card", "data-metric": key });
    grid.appendChild(box);
    Charts.lineChart(box, data.runs.map((r, i) => ({ name: names[i], points: data.curves[r.run_id][key] || [] })), { title: key });
  }
  drawDiff();
}

// -- live status ---------------------------------------------------------------------------

async function statusPage(token) {
  setNav("status");
  const holder = h("div", { id: "status-table" });
  app.textContent = "";
  append(app, h("h1", {}, "Live"), h("p", { class: "muted" }, "Running runs, and runs that failed, were killed or stalled in the last hour."), holder);
  async function load() {
    const rows = await api("/api/status");
    if (token !== routeToken) return;
    holder.textContent = "";
    if (!rows.length) { holder.appendChild(h("p", { class: "notice" }, "Nothing running, and nothing failed or stalled lately.")); return; }
    holder.appendChild(table([
      { label: "run", cell: (r) => runLink(r.run_id, r.name) }, { label: "status", cell: (r) => badge(r.status) },
      { label: "project/experiment", cell: (r) => `${r.project}/${r.experiment || ""}` },
      { label: "step", num: true, cell: (r) => r.step === null ? "" : (r.total_steps ? `${r.step}/${r.total_steps}` : r.step) },
      { label: "progress", cell: (r) => r.percent === null ? "" : [h("span", { class: "progress" }, h("span", { style: `width:${r.percent}%` })), ` ${r.percent}%`] },
      { label: "ETA", num: true, cell: (r) => dur(r.eta_s) }, { label: "metrics", cell: (r) => r.metrics },
      { label: "heartbeat", num: true, cell: (r) => r.heartbeat_age_s === null ? "" : `${dur(r.heartbeat_age_s)} ago` },
      { label: "CPU", num: true, cell: (r) => r.cpu_util === null ? "" : `${Math.round(r.cpu_util)}%` },
      { label: "GPU", num: true, cell: (r) => r.gpu_util === null ? "" : `${Math.round(r.gpu_util)}%` },
      { label: "cost", num: true, cell: (r) => r.cost_usd === null ? "" : `$${r.cost_usd.toFixed(2)}` },
    ], rows, (r) => ({ "data-status": r.status })));
    live.textContent = "● live";
  }
  await load();
  every(2000, () => load().catch(() => { live.textContent = "offline"; }));
}

// -- reports built by other areas (leaderboard, importance, costs) ------------------------

function reportRows(result) {
  if (result && result.rows && result.columns) return { columns: result.columns, rows: result.rows };
  if (Array.isArray(result)) {
    const columns = result.length ? Object.keys(result[0]) : [];
    return { columns, rows: result };
  }
  if (result && typeof result === "object") {
    return { columns: ["key", "value"], rows: Object.entries(result).map(([key, value]) => ({ key, value: typeof value === "object" ? JSON.stringify(value) : value })) };
  }
  return { columns: ["value"], rows: [{ value: result }] };
}

function reportTable(columns, rows) {
  return table(columns.map((c) => ({ label: c, num: rows.some((r) => typeof r[c] === "number"),
    cell: (r) => c === "run_id" && r[c] ? runLink(r[c]) : (typeof r[c] === "number" ? num(r[c]) : (r[c] === null || r[c] === undefined ? "" : (typeof r[c] === "object" ? JSON.stringify(r[c]) : r[c]))) })), rows);
}

// Reports that need a metric say so instead of calling the function without one.
const REPORTS = {
  leaderboard: { title: "Leaderboard", fields: ["metric", "mode", "project", "experiment", "limit"], needs: "metric" },
  importance: { title: "Parameter importance", fields: ["metric", "project", "experiment"], needs: "metric" },
  costs: { title: "Cost report", fields: ["by", "project", "since"] },
};

async function reportPage(token, kind, query, render) {
  setNav(kind);
  const spec = REPORTS[kind];
  const form = h("form", { class: "toolbar", id: "report-form" },
    spec.fields.map((f) => h("input", { name: f, placeholder: f, value: query.get(f) || "", size: 14 })),
    h("button", { class: "primary", type: "submit" }, "Show"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const f of spec.fields) if (form.elements[f].value) q.set(f, form.elements[f].value);
    location.hash = `#/${kind}?${q}`;
  });
  const out = h("div", { id: "report" });
  app.textContent = "";
  append(app, h("h1", {}, spec.title), form, out);
  if (spec.needs && !query.get(spec.needs)) {
    out.appendChild(h("div", { class: "notice", id: "report-hint" },
      `Enter a ${spec.needs} (a key shown on a run page) and press Show.`));
    return;
  }
  const q = new URLSearchParams();
  for (const f of spec.fields) if (query.get(f)) q.set(f, query.get(f));
  const data = await api(`/api/${kind}?${q}`);
  if (token !== routeToken) return;
  if (!data.available) { out.appendChild(h("div", { class: "notice", id: "not-available" }, `Not available: ${data.reason}`)); return; }
  if (data.error) { out.appendChild(h("div", { class: "notice", id: "report-error" }, data.error)); return; }
  render(out, data.result, query);
}

// A bar per row: the first of `prefer` (else any numeric column) that holds a number.
function bars(out, columns, rows, prefer, label, title) {
  const numeric = (c) => rows.some((r) => typeof r[c] === "number");
  const value = prefer.find((c) => columns.includes(c) && numeric(c)) ||
    columns.find((c) => numeric(c) && !["rank", "runs", "step", "n_points", "seed"].includes(c));
  if (!value || !rows.length) return;
  const labelOf = typeof label === "function" ? label : (r) => r[label];
  const box = h("div", { class: "card chart-card", "data-chart": value });
  out.appendChild(box);
  Charts.barChart(box, rows.filter((r) => typeof r[value] === "number").slice(0, 30)
    .map((r) => ({ label: labelOf(r), value: r[value] })), { title: title ? `${title}: ${value}` : value });
}

function leaderboardReport(out, result, query) {
  const { columns, rows } = reportRows(result);
  bars(out, columns, rows, [query.get("metric")], (r) => r.name || (r.run_id || "").substring(0, 12), "best runs");
  out.appendChild(reportTable(columns, rows));
}

function importanceReport(out, result) {
  const { columns, rows } = reportRows(result);
  bars(out, columns, rows, ["importance"], "param", "importance");
  out.appendChild(reportTable(columns, rows));
}

// ledger.report_costs gives sections (groups, efficiency, Pareto front), each a frame.
function costsReport(out, result) {
  if (!result || !result.groups) {
    const { columns, rows } = reportRows(result);
    out.appendChild(reportTable(columns, rows));
    return;
  }
  const groups = result.groups;
  const shown = groups.rows.filter((r) => r.group !== "TOTAL");
  bars(out, groups.columns, shown, ["cost_usd", "energy_kwh", "emissions_kg", "gpu_hours", "wall_hours"], "group",
    `by ${result.by || "group"}`);
  out.appendChild(h("h2", {}, `By ${result.by || "group"}`));
  out.appendChild(reportTable(groups.columns, groups.rows));
  for (const [key, title] of [["efficiency", "Efficiency"], ["front", "Cost/quality front"]]) {
    const section = result[key];
    if (section && section.rows && section.rows.length) {
      out.appendChild(h("h2", {}, title));
      out.appendChild(reportTable(section.columns, section.rows));
    }
  }
  if (result.over_budget && result.over_budget.length) {
    out.appendChild(h("h2", {}, "Over budget"));
    out.appendChild(reportTable(...Object.values(reportRows(result.over_budget))));
  }
}

// -- router ------------------------------------------------------------------------------------

async function route() {
  clearTimers();
  const token = ++routeToken;
  const hash = location.hash || "#/";
  const path = hash.split("?")[0];
  const query = params(hash);
  try {
    if (path === "#/" || path === "#/runs") await runsPage(token);
    else if (path.startsWith("#/run/")) await runPage(token, decodeURIComponent(path.substring(6)));
    else if (path === "#/compare") await comparePage(token, query);
    else if (path === "#/status") await statusPage(token);
    else if (path === "#/leaderboard") await reportPage(token, "leaderboard", query, leaderboardReport);
    else if (path === "#/importance") await reportPage(token, "importance", query, importanceReport);
    else if (path === "#/costs") await reportPage(token, "costs", query, costsReport);
    else { app.textContent = ""; app.appendChild(h("div", { class: "error" }, `No page ${path}`)); }
  } catch (err) {
    if (token === routeToken) showError(app, err);
  }
}

window.addEventListener("hashchange", route);
route();
