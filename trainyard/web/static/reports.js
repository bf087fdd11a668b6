"use strict";
/* Reports a task stored as artifacts (trainyard.clearml's Logger), shown on its page: images as
   they are, tables (CSV) as HTML tables built from text nodes, plots (plotly-style JSON: scatter,
   line, bar and histogram traces) drawn with uPlot like the metric charts. Files over MAX_BYTES
   and rows past MAX_ROWS stay downloads. */
(function () {
  const h = TY.h;
  const COLORS = ["#2f6fde", "#e5532e", "#2e9e57", "#a64fc9", "#e59b12", "#1fa3a3", "#d64090", "#6b7385"];
  const SHOWN_IMAGES = ["image/png", "image/jpeg", "image/gif", "image/webp"];  // never SVG (it can carry script)
  const MAX_BYTES = 2 * 1024 * 1024;
  const MAX_ROWS = 200;
  const MAX_POINTS = 100000;
  const fetched = new Map(); // url|sha256 -> Promise of the file's text (a page re-renders often)

  function text(url, sha) {
    const key = `${url}|${sha || ""}`;
    if (!fetched.has(key)) {
      fetched.set(key, fetch(url, { credentials: "same-origin" }).then((r) => {
        if (!r.ok) throw new Error(`${r.status}`);
        return r.text();
      }));
    }
    return fetched.get(key);
  }

  /* RFC 4180 CSV: quoted fields may hold commas, quotes ("") and newlines. */
  function parseCsv(src, maxRows) {
    const rows = [];
    let row = [], field = "", quoted = false, i = 0;
    while (i < src.length && rows.length <= maxRows) {
      const c = src[i];
      if (quoted) {
        if (c === '"' && src[i + 1] === '"') { field += '"'; i += 2; continue; }
        if (c === '"') { quoted = false; i += 1; continue; }
        field += c; i += 1; continue;
      }
      if (c === '"') quoted = true;
      else if (c === ",") { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && src[i + 1] === "\n") i += 1;
        row.push(field); rows.push(row); row = []; field = "";
      } else field += c;
      i += 1;
    }
    if ((field || row.length) && rows.length <= maxRows) { row.push(field); rows.push(row); }
    return rows;
  }

  function tableView(csv) {
    const rows = parseCsv(csv, MAX_ROWS + 1);
    if (!rows.length) return h("p", { class: "empty" }, "empty table");
    const [head, ...body] = rows;
    const shown = body.slice(0, MAX_ROWS);
    return h("div", { class: "report-table" },
      h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
        h("tbody", {}, shown.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))),
      body.length > MAX_ROWS ? h("p", { class: "muted" }, `first ${MAX_ROWS} rows; download for all`) : null);
  }

  const numbers = (xs) => (Array.isArray(xs) ? xs.slice(0, MAX_POINTS).map((v) => (v === null || v === "" ? null : Number(v))) : []);

  /* A plotly histogram trace (raw values) as bar heights over equal bins. */
  function binned(trace) {
    const values = numbers(trace.x && trace.x.length ? trace.x : trace.y).filter((v) => Number.isFinite(v));
    if (!values.length) return { x: [], y: [] };
    const lo = Math.min(...values), hi = Math.max(...values);
    const count = Math.max(1, Math.min(200, Number(trace.nbinsx) || Math.ceil(Math.sqrt(values.length))));
    const width = hi > lo ? (hi - lo) / count : 1;
    const y = new Array(count).fill(0);
    for (const v of values) y[Math.min(count - 1, Math.floor((v - lo) / width))] += 1;
    return { x: y.map((_, i) => lo + (i + 0.5) * width), y };
  }

  /* The simple traces of a figure as uPlot series; null when none can be drawn. */
  function series(figure) {
    const traces = Array.isArray(figure && figure.data) ? figure.data.slice(0, 20) : [];
    const drawn = [];
    let categories = null; // x labels of a trace whose x are names (drawn at 0, 1, 2...)
    for (const t of traces) {
      if (!t || typeof t !== "object") continue;
      const type = t.type || "scatter";
      let x, y, kind;
      if (type === "histogram") { ({ x, y } = binned(t)); kind = "bars"; }
      else if (type === "bar" || type === "scatter" || type === "scattergl") {
        y = numbers(t.y);
        const xs = Array.isArray(t.x) ? t.x.slice(0, y.length) : [];
        // category labels (strings) are drawn at their positions 0, 1, 2...
        const numeric = xs.length === y.length && xs.every((v) => Number.isFinite(Number(v)));
        x = numeric ? numbers(xs) : y.map((_, i) => i);
        if (!numeric && xs.length === y.length) categories = xs.map(String);
        kind = type === "bar" ? "bars" : String(t.mode || "lines").includes("lines") ? "lines" : "points";
      } else continue;
      if (y.length) drawn.push({ name: String(t.name || type), x, y, kind });
    }
    return drawn.length ? { drawn, categories } : null;
  }

  const label = (v) => (typeof v === "string" ? v : v && typeof v === "object" && typeof v.text === "string" ? v.text : "");

  function plotView(box, figure, caption) {
    const found = series(figure);
    if (!found) { box.appendChild(h("p", { class: "empty" }, "no trace this page can draw (download it)")); return; }
    const { drawn, categories } = found;
    const xValues = categories ? (u, ticks) => ticks.map((t) => (Number.isInteger(t) && categories[t] !== undefined ? categories[t] : "")) : undefined;
    const tables = drawn.map((s) => {
      const order = s.x.map((_, i) => i).sort((a, b) => s.x[a] - s.x[b]);
      return [order.map((i) => s.x[i]), order.map((i) => s.y[i])];
    });
    const layout = (figure && figure.layout) || {};
    const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 64] }) : undefined;
    new uPlot({
      width: 440, height: 220, title: label(layout.title) || caption,
      scales: {
        x: { time: false, range: (u, lo, hi) => (lo === hi ? [lo - 1, hi + 1] : [lo - (hi - lo) * 0.08, hi + (hi - lo) * 0.08]) },
        y: { range: (u, lo, hi) => [Math.min(0, lo), hi > lo ? hi + (hi - lo) * 0.05 : hi + 1] }, // bars stand on 0
      },
      axes: [{ label: label((layout.xaxis || {}).title) || undefined, values: xValues }, { label: label((layout.yaxis || {}).title) || undefined }],
      series: [{}, ...drawn.map((s, i) => {
        const color = COLORS[i % COLORS.length];
        if (s.kind === "bars") return { label: s.name, stroke: color, fill: color + "99", paths: bars, points: { show: false } };
        if (s.kind === "points") return { label: s.name, stroke: color, paths: () => null, points: { show: true, size: 5, fill: color } };
        return { label: s.name, stroke: color, width: 2, spanGaps: true };
      })],
    }, uPlot.join(tables), box);
  }

  /* The figures under a task's artifacts table: images, tables and plots it reported. */
  TY.reportsView = function reportsView(task, arts, url) {
    const caption = (a) => (a.metadata && a.metadata.title ? `${a.metadata.title} / ${a.metadata.series || ""}` : a.name);
    const kind = (a) => (a.metadata && a.metadata.clearml_type) || "";
    const figures = [];
    for (const a of arts) {
      const small = !a.size || a.size <= MAX_BYTES;
      if (SHOWN_IMAGES.includes(a.content_type)) {
        figures.push(h("figure", { "data-artifact": a.name, "data-kind": "image" },
          h("img", { src: url(a), alt: a.name, loading: "lazy" }), h("figcaption", {}, caption(a))));
      } else if ((kind(a) === "table" || kind(a) === "plot") && small) {
        const body = h("div", { class: "report-body" });
        figures.push(h("figure", { "data-artifact": a.name, "data-kind": kind(a) }, body, h("figcaption", {}, caption(a))));
        text(url(a), a.sha256).then((src) => {
          if (kind(a) === "table") body.replaceChildren(tableView(src));
          else plotView(body, JSON.parse(src), caption(a));
          body.parentElement.dataset.ready = "1";
        }).catch((e) => body.replaceChildren(h("p", { class: "empty" }, `cannot show it (${e.message}); download it`)));
      }
    }
    return figures.length ? h("div", { id: "plots", class: "plots" }, figures) : null;
  };
})();
