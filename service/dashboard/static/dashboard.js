// The DyESP dashboard: every page is a shell; this script reads /v1 and draws it.
// The API key (when the server asks for one) lives in this tab's sessionStorage and travels in the
// Authorization header only, never in a URL. Plots get bounded data: the server samples or bins
// and says how in each answer's `note`, shown under the plot.
"use strict";

const body = document.body;
const ROOT = body.dataset.root || "";
const STUDY = body.dataset.study;
const TRIAL = body.dataset.trial;
const KEY = "dyesp-api-key";
const LIVE_MS = 3000;
const PLOT_CONFIG = { responsive: true, displaylogo: false };
const STATES = ["complete", "running", "waiting", "stopped", "failed", "infeasible"];

class AuthNeeded extends Error {}

// Plotly loads asynchronously (base.html) while the page fetches its data; drawing waits for it.
const plotlyReady = new Promise((resolve, reject) => {
  const tag = document.getElementById("plotly-js");
  if (window.Plotly || !tag) { resolve(); return; }  // loaded already, or a page without plots
  tag.addEventListener("load", () => resolve());
  tag.addEventListener("error", () => reject(new Error("Plotly.js failed to load")));
});

async function api(path) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = "Bearer " + key;
  const response = await fetch(ROOT + path, { headers });
  if (response.status === 401) {
    if (key) sessionStorage.removeItem(KEY);
    askForKey(key ? "the key was refused: " + (await problem(response)) : "");
    throw new AuthNeeded();
  }
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await problem(response)}`);
  return response.json();
}

async function problem(response) {
  try { return (await response.json()).detail || response.statusText; }
  catch { return response.statusText; }
}

function askForKey(message) {
  document.getElementById("content").hidden = true;
  document.getElementById("key-form").hidden = false;
  document.getElementById("key-error").textContent = message;
}

function setupKeyForm() {
  document.getElementById("key-submit").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = document.getElementById("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    location.reload();  // the key is in session storage, the URL stays as it was
  });
  const forget = document.getElementById("forget-key");
  forget.hidden = !sessionStorage.getItem(KEY);
  forget.addEventListener("click", () => { sessionStorage.removeItem(KEY); location.reload(); });
}

function showError(error) {
  if (error instanceof AuthNeeded) return;
  const box = document.getElementById("error");
  box.hidden = false;
  box.textContent = String(error.message || error);
}

// ---- small DOM helpers (text only: names and values come from users) ----
function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
function link(text, href) { return el("a", text, { href: ROOT + href }); }
function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell ?? "";
    tr.appendChild(td);
  }
  return tr;
}
function fill(tbody, rows) { tbody.replaceChildren(...rows); }
function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3)
      : String(+v.toPrecision(5));
  }
  return String(v);
}
function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }
function setText(id, text) { const n = document.getElementById(id); if (n) n.textContent = text; }
function studyPath(suffix) { return `/v1/studies/${encodeURIComponent(STUDY)}${suffix || ""}`; }
function uiStudy(suffix) { return `/ui/studies/${encodeURIComponent(STUDY)}${suffix || ""}`; }
function colors(i) {
  const palette = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899",
                   "#84cc16", "#64748b", "#a16207"];
  return palette[i % palette.length];
}
function plot(id, traces, layout) {
  const base = { margin: { l: 55, r: 20, t: 10, b: 45 }, hovermode: "closest",
                 legend: { orientation: "h", y: -0.2 }, font: { size: 11 } };
  return plotlyReady.then(() => Plotly.react(id, traces, Object.assign(base, layout || {}),
                                             PLOT_CONFIG));
}

// Re-run `refresh` when the study's revision changes (polled; no full reload). A redraw of a
// large study costs the server a pass over its trials, so the next one waits at least five times
// as long as the last took: an open tab never keeps a busy server busier than a fifth.
function live(refresh, getRevision) {
  const badge = document.getElementById("live");
  let last = null;
  let busy = false;
  let notBefore = 0;
  async function tick() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const study = await api(studyPath());
      if (last !== null && study.revision !== last) {
        if (Date.now() < notBefore) return;  // `last` stays: the change is drawn next time
        const started = Date.now();
        await refresh(study);
        notBefore = Date.now() + 4 * (Date.now() - started);
      }
      last = study.revision;
      badge.className = "live on";
      badge.textContent = "live · " + new Date().toLocaleTimeString();
    } catch (error) { showError(error); } finally { busy = false; }
  }
  last = getRevision();
  setInterval(tick, LIVE_MS);
}

function ready() { body.dataset.ready = String(Number(body.dataset.ready || 0) + 1); }

// ---- Studies ----
async function studiesPage() {
  const limit = 25;
  let offset = 0;
  let search = "";
  async function load() {
    const q = new URLSearchParams({ order: "-created", offset, limit });
    if (search) q.set("search", search);
    const page = await api("/v1/studies?" + q);
    fill(document.querySelector("#studies tbody"), page.studies.map((s) => row([
      link(s.name, `/ui/studies/${encodeURIComponent(s.id)}`), s.direction, s.n_trials,
      s.trials_by_state.complete || 0, s.trials_by_state.running || 0,
      s.trials_by_state.stopped || 0,
      (s.trials_by_state.failed || 0) + (s.trials_by_state.infeasible || 0),
      s.best_trial ? fmt(s.best_trial.value) : "", when(s.last_activity)])));
    setText("studies-total", `${page.total} ${page.total === 1 ? "study" : "studies"}` +
      (page.total > limit ? ` · ${offset + 1}-${offset + page.studies.length}` : ""));
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled = offset + limit >= page.total;
  }
  let timer = null;
  document.getElementById("search").addEventListener("input", (event) => {
    clearTimeout(timer);
    timer = setTimeout(() => { search = event.target.value.trim(); offset = 0; load().catch(showError); }, 250);
  });
  document.getElementById("prev").onclick = () => { offset = Math.max(0, offset - limit); load().catch(showError); };
  document.getElementById("next").onclick = () => { offset += limit; load().catch(showError); };
  await load();
  setInterval(() => { if (!document.hidden) load().catch(showError); }, 5000);
}

// ---- A study ----
function summary(study) {
  document.title = `${study.name} · DyESP`;
  setText("study-name", study.name);
  const parts = [`${study.direction}`, `${study.n_trials} trials`];
  for (const s of STATES) if (study.trials_by_state[s]) parts.push(`${study.trials_by_state[s]} ${s}`);
  if (study.best_trial) parts.push(`best ${fmt(study.best_trial.value)} (#${study.best_trial.number})`);
  if (study.fidelity) parts.push(`fidelity ${study.fidelity.name} ${study.fidelity.min}-${study.fidelity.max}`);
  setText("study-summary", parts.join(" · "));
}

async function drawHistory() {
  const h = await api(studyPath("/insights/history?max_points=2000"));
  const traces = h.strategies.map((name, i) => {
    const idx = h.points.number.map((_, k) => k)
      .filter((k) => h.points.strategy[k] === name && h.points.value[k] !== null);
    return {
      type: "scatter", mode: "markers", name,
      x: idx.map((k) => h.points.number[k]), y: idx.map((k) => h.points.value[k]),
      marker: { color: colors(i), size: 6, opacity: 0.75,
                symbol: idx.map((k) => (h.points.state[k] === "stopped" ? "x" : "circle")) },
      hovertemplate: "#%{x}: %{y}<extra>" + name + "</extra>",
    };
  }).filter((t) => t.x.length);
  if (h.best.number.length) {
    const last = h.bins.length ? h.bins[h.bins.length - 1].last : h.best.number.at(-1);
    traces.push({ type: "scatter", mode: "lines", name: "best so far", line: { shape: "hv", color: "#111827" },
                  x: [...h.best.number, last], y: [...h.best.value, h.best.value.at(-1)] });
  }
  await plot("history-plot", traces, { xaxis: { title: { text: "trial number" } },
                                       yaxis: { title: { text: "value" } } });
  setText("history-note", h.note + " · colour: the strategy that proposed it; ×: stopped early (its last reported value)");
  return h;
}

// Parallel coordinates drawn as SVG lines, one trace per value band: Plotly's own parcoords is
// WebGL, which a machine without a GPU draws in software (seconds for a thousand lines).
const BANDS = ["#440154", "#414487", "#2a788e", "#22a884", "#7ad151", "#fde725"];  // viridis

function axisPosition(p, v) {
  if (v === null || v === undefined) return null;
  if (p.type === "categorical") {
    const k = p.choices.map(String).indexOf(String(v));
    return p.choices.length > 1 ? k / (p.choices.length - 1) : 0.5;
  }
  const [lo, hi, x] = p.log ? [Math.log10(p.low), Math.log10(p.high), Math.log10(v)] : [p.low, p.high, v];
  return hi > lo ? (x - lo) / (hi - lo) : 0.5;
}

function parallelCoordinates(d) {
  const axes = d.params.length;
  const lo = Math.min(...d.values), hi = Math.max(...d.values);
  const rank = d.values.map((v, k) => k).sort((a, b) => d.values[a] - d.values[b]);
  const band = new Array(d.values.length);
  rank.forEach((k, r) => { band[k] = Math.min(BANDS.length - 1, Math.floor(r * BANDS.length / rank.length)); });
  const minimize = d.direction === "minimize";
  const traces = BANDS.map((color, b) => ({ type: "scatter", mode: "lines", hoverinfo: "skip",
    name: "", showlegend: false, line: { color: minimize ? BANDS[BANDS.length - 1 - b] : color, width: 1 },
    opacity: 0.55, x: [], y: [] }));
  d.values.forEach((value, k) => {
    const t = traces[band[k]];
    d.params.forEach((p, a) => { t.x.push(a); t.y.push(axisPosition(p, d.columns[p.name][k])); });
    t.x.push(axes, null);
    t.y.push(hi > lo ? (value - lo) / (hi - lo) : 0.5, null);
  });
  // The better bands are drawn last, on top.
  const ordered = minimize ? traces.reverse() : traces;
  const annotations = [];
  const shapes = [];
  const tick = (x, y, text, anchor) => annotations.push({ x, y, text, showarrow: false, xanchor: anchor || "right",
    font: { size: 9, color: "#6b7280" }, xshift: anchor === "left" ? 4 : -4 });
  d.params.forEach((p, a) => {
    shapes.push({ type: "line", x0: a, x1: a, y0: 0, y1: 1, line: { color: "#9ca3af", width: 1 } });
    annotations.push({ x: a, y: 1.06, text: p.log ? `log ${p.name}` : p.name, showarrow: false, font: { size: 11 } });
    if (p.type === "categorical") {
      p.choices.forEach((c) => tick(a, axisPosition(p, c), String(c)));
    } else {
      tick(a, 0, fmt(p.low)); tick(a, 1, fmt(p.high));
    }
  });
  shapes.push({ type: "line", x0: axes, x1: axes, y0: 0, y1: 1, line: { color: "#111827", width: 1.5 } });
  annotations.push({ x: axes, y: 1.06, text: "value", showarrow: false, font: { size: 11 } });
  tick(axes, 0, fmt(lo), "left"); tick(axes, 1, fmt(hi), "left");
  return plot("parcoords-plot", ordered.filter((t) => t.x.length), {
    shapes, annotations, hovermode: false, showlegend: false, margin: { l: 70, r: 50, t: 30, b: 10 },
    xaxis: { visible: false, range: [-0.3, axes + 0.3] }, yaxis: { visible: false, range: [-0.05, 1.1] } });
}

// One figure with a subplot per parameter: one Plotly call instead of one per plot.
function slicePlots(d) {
  const ranked = [...d.params].sort((a, b) => (d.importance[b.name] || 0) - (d.importance[a.name] || 0)).slice(0, 12);
  const columns = Math.min(3, ranked.length);
  const rows = Math.ceil(ranked.length / columns);
  document.getElementById("slices-plot").style.height = `${Math.max(1, rows) * 240}px`;
  const layout = { grid: { rows, columns, pattern: "independent", ygap: 0.35, xgap: 0.08 },
                   showlegend: false, margin: { l: 45, r: 10, t: 25, b: 30 }, annotations: [] };
  const traces = ranked.map((p, i) => {
    const xs = d.columns[p.name];
    const keep = xs.map((v, k) => k).filter((k) => xs[k] !== null && xs[k] !== undefined);
    const suffix = i === 0 ? "" : String(i + 1);
    layout["xaxis" + suffix] = { type: p.type === "categorical" ? "category" : (p.log ? "log" : "linear"),
                                 title: { text: p.name, font: { size: 11 }, standoff: 2 } };
    return { type: "scatter", mode: "markers", xaxis: "x" + suffix, yaxis: "y" + suffix, name: p.name,
      x: keep.map((k) => (p.type === "categorical" ? String(xs[k]) : xs[k])), y: keep.map((k) => d.values[k]),
      marker: { size: 5, color: keep.map((k) => d.numbers[k]), colorscale: "Blues", opacity: 0.8 },
      hovertemplate: p.name + "=%{x}<br>value %{y}<extra></extra>" };
  });
  return plot("slices-plot", traces, layout);
}

async function drawParams() {
  const d = await api(studyPath("/insights/params?max_points=1000"));
  setText("params-note", d.note + " · one line per trial, its colour the value's band (sixths of "
    + "the shown trials, yellow the best)");
  const order = Object.entries(d.importance).sort((a, b) => a[1] - b[1]);
  await Promise.all([
    d.values.length ? parallelCoordinates(d) : Promise.resolve(),
    plot("importance-plot", [{ type: "bar", orientation: "h", x: order.map((e) => e[1]),
      y: order.map((e) => e[0]), marker: { color: "#2563eb" } }],
      { margin: { l: 120, r: 20, t: 10, b: 40 }, xaxis: { title: { text: "share of importance" }, range: [0, 1] } }),
    slicePlots(d)]);
  setText("importance-note", "Method: " + d.importance_method + ", over the " + d.shown + " trials shown above.");
  return d;
}

async function drawCurves() {
  const c = await api(studyPath("/insights/curves"));
  document.getElementById("curves-card").hidden = c.curves.length === 0;
  if (!c.curves.length) return c;
  await plot("curves-plot", c.curves.map((curve, i) => ({ type: "scatter", mode: "lines",
    name: `#${curve.number} (${curve.state})`, x: curve.points.map((p) => p[0]),
    y: curve.points.map((p) => p[1]), line: { color: colors(i), width: 1.5 } })),
    { xaxis: { title: { text: "step" } }, yaxis: { title: { text: "reported value" } } });
  setText("curves-note", c.note);
  return c;
}

function trialsTable(study) {
  const params = study.space.params;
  const state = { offset: 0, limit: 20, filters: [], latest: 0 };
  const head = document.querySelector("#trials thead");
  head.replaceChildren(row(["#", "state", "value", "strategy", ...params.map((p) => p.name), "last step", "finished"]));
  head.querySelectorAll("td").forEach((td) => { const th = el("th", td.textContent); td.replaceWith(th); });
  const select = document.getElementById("filter-param");
  select.replaceChildren(...params.map((p) => el("option", p.name, { value: p.name })));
  const inputs = document.getElementById("filter-inputs");
  function filterInputs() {
    const p = params.find((q) => q.name === select.value);
    if (!p) return;
    if (p.type === "categorical") {
      const choice = el("select", null, { id: "filter-choice" });
      choice.replaceChildren(...p.choices.map((c) => el("option", String(c), { value: String(c) })));
      inputs.replaceChildren(choice);
    } else {
      inputs.replaceChildren(el("input", null, { id: "filter-low", type: "number", step: "any", value: p.low, size: 8 }),
                             document.createTextNode(" to "),
                             el("input", null, { id: "filter-high", type: "number", step: "any", value: p.high, size: 8 }));
    }
  }
  select.onchange = filterInputs;
  filterInputs();
  function chips() {
    document.getElementById("filters").replaceChildren(...state.filters.map((f, i) => {
      const chip = el("span", f.label + " ", { class: "chip" });
      const x = el("button", "×", { title: "remove" });
      x.onclick = () => { state.filters.splice(i, 1); state.offset = 0; chips(); load().catch(showError); };
      chip.appendChild(x);
      return chip;
    }));
  }
  document.getElementById("add-filter").onclick = () => {
    const p = params.find((q) => q.name === select.value);
    if (p.type === "categorical") {
      const v = document.getElementById("filter-choice").value;
      state.filters.push({ kind: "choice", text: `${p.name}:${v}`, label: `${p.name} = ${v}` });
    } else {
      const lo = document.getElementById("filter-low").value, hi = document.getElementById("filter-high").value;
      state.filters.push({ kind: "range", text: `${p.name}:${lo}:${hi}`, label: `${lo} ≤ ${p.name} ≤ ${hi}` });
    }
    state.offset = 0; chips(); load().catch(showError);
  };
  document.getElementById("state-filter").onchange = () => { state.offset = 0; load().catch(showError); };
  document.getElementById("sort").onchange = () => { state.offset = 0; load().catch(showError); };
  document.getElementById("trials-prev").onclick = () => { state.offset = Math.max(0, state.offset - state.limit); load().catch(showError); };
  document.getElementById("trials-next").onclick = () => { state.offset += state.limit; load().catch(showError); };
  async function load() {
    const q = new URLSearchParams({ sort: document.getElementById("sort").value, offset: state.offset, limit: state.limit });
    const st = document.getElementById("state-filter").value;
    if (st) q.set("state", st);
    for (const f of state.filters) q.append(f.kind, f.text);
    const mine = ++state.latest;
    const page = await api(studyPath("/insights/trials?" + q));
    if (mine !== state.latest) return;  // a newer request (another filter, page) answers later
    fill(document.querySelector("#trials tbody"), page.trials.map((t) => {
      const tr = row([link(String(t.number), uiStudy(`/trials/${t.id}`)), t.state, fmt(t.value),
        t.proposal ? t.proposal.strategy : "", ...params.map((p) => fmt(t.params[p.name])),
        t.last_step ?? "", when(t.completed_at)]);
      tr.children[1].className = "state-" + t.state;
      return tr;
    }));
    const last = Math.min(state.offset + state.limit, page.total);
    setText("trials-page", page.total ? `${state.offset + 1}-${last} of ${page.total}` : "no trials match");
    document.getElementById("trials-prev").disabled = state.offset === 0;
    document.getElementById("trials-next").disabled = last >= page.total;
  }
  return load;
}

async function studyPage() {
  let study = await api(studyPath());
  summary(study);
  const loadTrials = trialsTable(study);
  await Promise.all([drawHistory(), drawParams(), drawCurves(), loadTrials()]);
  let paramsAt = Date.now();
  live(async (fresh) => {
    study = fresh;
    summary(study);
    const work = [drawHistory(), drawCurves(), loadTrials()];
    if (Date.now() - paramsAt > 10000) { paramsAt = Date.now(); work.push(drawParams()); }
    await Promise.all(work);
  }, () => study.revision);
}

// ---- The engine's view ----
async function enginePage() {
  let study = await api(studyPath());
  setText("study-name", `Engine · ${study.name}`);
  async function draw(fresh) {
    study = fresh || study;
    const [h, pruner] = await Promise.all([api(studyPath("/insights/history?max_points=2000")),
                                           api(studyPath("/pruner?limit=100"))]);
    const x = h.bins.map((b) => b.last);
    await plot("exploration-plot", [{ type: "scatter", mode: "lines+markers", x,
      y: h.bins.map((b) => b.exploration), name: "exploration degree", line: { color: "#8b5cf6" } }],
      { xaxis: { title: { text: "trial number (end of bin)" } }, yaxis: { title: { text: "exploration" }, range: [0, 1.05] } });
    await plot("mix-plot", h.strategies.map((name, i) => ({ type: "bar", name, x,
      y: h.bins.map((b) => (b.by_strategy[name] || 0) / b.count), marker: { color: colors(i) } })),
      { barmode: "stack", bargap: 0.05, xaxis: { title: { text: "trial number (end of bin)" } },
        yaxis: { title: { text: "share of trials" }, range: [0, 1] } });
    await plot("credit-plot", h.strategies.map((name, i) => {
      let sum = 0;
      return { type: "scatter", mode: "lines", name, x, line: { color: colors(i), shape: "hv" },
               y: h.bins.map((b) => (sum += b.improved_by[name] || 0)) };
    }), { xaxis: { title: { text: "trial number" } }, yaxis: { title: { text: "new bests found (cumulative)" } } });
    fill(document.querySelector("#credit-table tbody"), h.strategies.map((name) => {
      const n = h.bins.reduce((a, b) => a + (b.by_strategy[name] || 0), 0);
      const won = h.bins.reduce((a, b) => a + (b.improved_by[name] || 0), 0);
      return row([name, n, won, n ? fmt(100 * won / n) : ""]);
    }));
    setText("history-note", `Bins of consecutive finished trials (${h.bins.length} bins, ${h.total} trials); ` +
      "credit: trials that set a new best value, what the scheduler rewards most.");
    setText("pruner-summary", [
      `active version: ${pruner.active_version ?? "none yet"}`,
      `measured trust (Spearman of predictions vs results): ${pruner.trust === null ? "not measured yet" : fmt(pruner.trust)}`,
      `candidates pruned: ${pruner.n_pruned}`, `retraining: ${pruner.retraining}`,
      `${pruner.versions_total} versions`].join(" · "));
    const versions = [...pruner.versions].reverse();
    await plot("trust-plot", [{ type: "scatter", mode: "lines+markers", name: "held-out Spearman",
      x: versions.map((v) => v.n_train), y: versions.map((v) => v.metrics.spearman_holdout ?? null),
      text: versions.map((v) => `v${v.version}`), marker: { color: versions.map((v) => (v.active ? "#10b981" : "#9ca3af")), size: 8 } }],
      { xaxis: { title: { text: "results trained on" } }, yaxis: { title: { text: "held-out Spearman" }, range: [-1, 1] } });
    fill(document.querySelector("#versions tbody"), pruner.versions.map((v) => row([v.version, v.active ? "yes" : "",
      v.n_train, fmt(v.metrics.spearman_holdout ?? null), v.device, fmt(v.seconds), when(v.created_at)])));
    const k = h.points.number.map((_, i) => i).filter((i) => h.points.predicted[i] !== null && h.points.value[i] !== null);
    await plot("predicted-plot", [{ type: "scatter", mode: "markers", x: k.map((i) => h.points.predicted[i]),
      y: k.map((i) => h.points.value[i]), text: k.map((i) => "#" + h.points.number[i]), marker: { size: 6, color: "#2563eb", opacity: 0.7 },
      hovertemplate: "%{text}: predicted %{x:.2f}, value %{y}<extra></extra>" }],
      { xaxis: { title: { text: "predicted goodness" }, range: [-0.05, 1.05] }, yaxis: { title: { text: "value" } } });
    const transfer = document.getElementById("transfer");
    if (!study.transfer) transfer.replaceChildren(el("p", "This study learns from no earlier study.", { class: "muted" }));
    else {
      const t = study.transfer;
      const table = el("table", null, { class: "grid" });
      table.appendChild(row(["sources", t.sources.join(", ")]));
      table.appendChild(row(["prior trained on", t.prior_trials ?? ""]));
      table.appendChild(row(["prior's trust (rank correlation with this study's results, its better half counted)", t.trust === null ? "not measured yet" : fmt(t.trust)]));
      table.appendChild(row(["still steers proposals", t.active ? "yes" : "no"]));
      transfer.replaceChildren(table);
    }
  }
  await draw();
  live(draw, () => study.revision);
}

// ---- The architecture map ----
async function mapPage() {
  let study = await api(studyPath());
  setText("study-name", `Architecture map · ${study.name}`);
  async function draw(fresh) {
    study = fresh || study;
    const m = await api(studyPath("/insights/map?max_points=1500"));
    const traces = [
      { type: "scatter", mode: "markers", name: "pruned (never trained)", x: m.pruned.x, y: m.pruned.y,
        text: m.pruned.label, marker: { color: "#9ca3af", size: 5, opacity: 0.25 },
        hovertemplate: "%{text}<extra>pruned</extra>" },
      { type: "scatter", mode: "markers", name: "evaluated", x: m.points.x, y: m.points.y,
        text: m.points.label, customdata: m.points.trial_id,
        marker: { color: m.points.value, colorscale: "Viridis", reversescale: study.direction === "minimize",
                  size: 7, showscale: true, colorbar: { title: { text: "value" } } },
        hovertemplate: "%{text}<extra>#%{customdata}</extra>" },
      ...(m.best_region ? [(() => {
        const best = new Set(m.best_region.trial_ids);
        const k = m.points.trial_id.map((_, i) => i).filter((i) => best.has(m.points.trial_id[i]));
        return { type: "scatter", mode: "markers", name: "best tenth", x: k.map((i) => m.points.x[i]),
                 y: k.map((i) => m.points.y[i]), hoverinfo: "skip",
                 marker: { size: 13, color: "rgba(0,0,0,0)", line: { color: "#ef4444", width: 1.5 } } };
      })()] : []),
      { type: "scatter", mode: "markers+text", name: "cluster centres", x: m.clusters.map((c) => c.x),
        y: m.clusters.map((c) => c.y), text: m.clusters.map((_, i) => "C" + (i + 1)), textposition: "top center",
        marker: { symbol: "x", size: 11, color: "#111827" }, hoverinfo: "text" },
    ];
    const shapes = m.best_region ? [{ type: "circle", xref: "x", yref: "y", line: { color: "#ef4444", dash: "dot" },
      x0: m.best_region.x - m.best_region.radius, x1: m.best_region.x + m.best_region.radius,
      y0: m.best_region.y - m.best_region.radius, y1: m.best_region.y + m.best_region.radius }] : [];
    await plot("map-plot", traces, { shapes,
      xaxis: { title: { text: `axis 1 (${(100 * m.explained[0]).toFixed(0)}% of the encoding's variance)` }, zeroline: false },
      yaxis: { title: { text: `axis 2 (${(100 * m.explained[1]).toFixed(0)}%)` }, zeroline: false,
               scaleanchor: "x", scaleratio: 1 } });
    setText("map-note", `${m.note}. ${m.method}` + (m.best_region ? ` (${m.best_region.count} trials).` : "."));
    fill(document.querySelector("#clusters tbody"), m.clusters.map((c, i) => row(["C" + (i + 1), c.size, fmt(c.median_value)])));
  }
  await draw();
  document.getElementById("map-plot").on("plotly_click", (event) => {
    const point = event.points.find((p) => p.data.name === "evaluated");
    if (point) location.href = ROOT + uiStudy(`/trials/${point.customdata}`);
  });
  live(draw, () => study.revision);
}

// ---- A trial ----
async function trialPage() {
  async function draw() {
    const [study, t] = await Promise.all([api(studyPath()), api(studyPath(`/trials/${TRIAL}`))]);
    document.getElementById("nav-study").textContent = study.name;
    document.title = `#${t.number} · ${study.name} · DyESP`;
    setText("trial-title", `Trial #${t.number} of ${study.name}`);
    setText("trial-summary", [t.state, t.value === null ? "" : `value ${fmt(t.value)}`, t.reason || ""].filter(Boolean).join(" · "));
    fill(document.querySelector("#trial-params tbody"), Object.entries(t.params).map(([k, v]) => row([k, fmt(v)])));
    const p = t.proposal;
    fill(document.querySelector("#trial-proposal tbody"), p ? [row(["strategy", p.strategy]),
      row(["exploration degree", fmt(p.exploration)]), row(["predicted goodness", p.predicted === null ? "pruner had no say" : fmt(p.predicted)])]
      : [row(["proposal", "enqueued or added by a client"])]);
    const seconds = (a, b) => (a && b ? fmt((new Date(b) - new Date(a)) / 1000) + " s" : "");
    fill(document.querySelector("#trial-timeline tbody"), [
      row(["created (waiting)", when(t.created_at)]), row(["started (running)", when(t.started_at)]),
      row(["last heartbeat", when(t.heartbeat_at)]), row([`finished (${t.state})`, when(t.completed_at)]),
      row(["ran for", seconds(t.started_at || t.created_at, t.completed_at || t.heartbeat_at)])]);
    const extra = [...Object.entries(t.static_metrics).map(([k, v]) => row([`metric ${k}`, fmt(v)])),
                   ...Object.entries(t.user_attrs).map(([k, v]) => row([`note ${k}`, JSON.stringify(v)]))];
    document.getElementById("trial-extra-card").hidden = extra.length === 0;
    fill(document.querySelector("#trial-extra tbody"), extra);
    if (t.last_step !== null) {
      const points = [];
      let total = 0;
      for (let offset = 0; offset < 5000; offset += 1000) {
        const page = await api(studyPath(`/trials/${TRIAL}/curve?offset=${offset}&limit=1000`));
        points.push(...page.points);
        total = page.total;
        if (points.length >= total) break;
      }
      document.getElementById("trial-curve-card").hidden = false;
      await plot("trial-curve", [{ type: "scatter", mode: "lines+markers", x: points.map((q) => q[0]),
        y: points.map((q) => q[1]), marker: { size: 4 }, name: "reported" }],
        { xaxis: { title: { text: study.fidelity ? study.fidelity.name : "step" } }, yaxis: { title: { text: "value" } } });
      setText("trial-curve-note", points.length < total ? `the first ${points.length} of ${total} points` : `${total} points`);
    }
    return study;
  }
  let study = await draw();
  live(async () => { study = await draw(); }, () => study.revision);
}

const PAGES = { studies: studiesPage, study: studyPage, engine: enginePage, map: mapPage, trial: trialPage };

document.addEventListener("DOMContentLoaded", () => {
  setupKeyForm();
  const page = PAGES[body.dataset.page];
  if (page) page().then(ready, (error) => { showError(error); });
});
