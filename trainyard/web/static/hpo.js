"use strict";
/* Hyper-parameter studies: the list, and one study (trials best first, the objective over trials,
   a parallel-coordinates view of parameters against the objective, the trials' objective curves
   overlaid). Updated live from the event stream. */
(function () {
  const h = TY.h;
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#2f6fde", "#e5532e", "#2e9e57", "#a64fc9", "#e59b12", "#1fa3a3", "#d64090", "#6b7385"];

  TY.fmt = function fmt(v) {
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) return v.map(fmt).join(", ");
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(5)));
    return typeof v === "string" ? v : JSON.stringify(v);
  };
  const objectiveLabel = (s) => s.objectives.map((o) => `${o.title}/${o.series} (${o.sign})`).join(", ");

  /* -- the list ---------------------------------------------------------------------------- */
  TY.pages.studies = function studiesPage(main) {
    const body = h("div", {}, h("p", { class: "empty" }, "loading…"));
    main.replaceChildren(h("h1", {}, "Studies"), h("div", { class: "panel" }, body));
    async function load() {
      const page = await TY.get("/api/studies?limit=100");
      if (!page.items.length) {
        body.replaceChildren(h("p", { class: "empty" }, "no studies yet (trainyard hpo start, or HyperParameterOptimizer)"));
        return;
      }
      body.replaceChildren(h("table", { id: "studies-table" },
        h("thead", {}, h("tr", {}, ["study", "status", "objective", "trials", "best", "created"].map((c) => h("th", {}, c)))),
        h("tbody", {}, page.items.map((s) => h("tr", { dataset: { study: s.id } },
          h("td", {}, h("a", { href: `#/studies/${s.id}` }, s.name), h("div", { class: "muted mono" }, s.id)),
          h("td", {}, TY.badge(s.status)),
          h("td", {}, objectiveLabel(s)),
          h("td", {}, `${s.trials}/${s.total_max_jobs}`),
          h("td", {}, s.best ? `${TY.fmt(s.best.value)} (trial ${s.best.number})` : ""),
          h("td", { title: TY.time(s.created) }, TY.ago(s.created)))))));
    }
    const refresh = TY.throttle(() => load().catch((e) => TY.toast(e.message, "error")), 500);
    refresh();
    return TY.onChange((ev) => { if (ev.kind === "study" || ev.kind === "resync") refresh(); });
  };

  /* -- one study ------------------------------------------------------------------------------ */
  TY.pages.study = function studyPage(main, params, id) {
    const head = h("div", {});
    const table = h("div", { id: "trials" });
    const overTrials = h("div", { class: "chart", id: "objective-over-trials" });
    const parallel = h("div", { id: "parallel" });
    const curves = h("div", { class: "chart", id: "curves" });
    main.replaceChildren(
      h("h1", {}, "Study ", h("span", { class: "mono" }, id)),
      h("div", { class: "panel" }, head),
      h("div", { class: "panel" }, h("h2", {}, "Trials (best first)"), table),
      h("div", { class: "panel two" },
        h("div", {}, h("h2", {}, "Objective over trials"), overTrials),
        h("div", {}, h("h2", {}, "Objective curves"), curves)),
      h("div", { class: "panel" }, h("h2", {}, "Parameters against the objective"), parallel));
    const plots = [];
    let tasks = new Set();
    let study = null;

    async function load() {
      study = await TY.get(`/api/studies/${id}`);
      const curvesData = await TY.get(`/api/studies/${id}/curves`);
      tasks = new Set(study.trials.map((t) => t.task));
      drawHead(study);
      drawTable(study);
      for (const p of plots.splice(0)) p.destroy();
      drawOverTrials(study);
      drawCurves(curvesData);
      drawParallel(study);
    }

    function drawHead(s) {
      const stop = h("button", { type: "button", class: "admin-only danger", dataset: { action: "stop" }, onclick: async () => {
        await TY.act(() => TY.post(`/api/studies/${id}/stop`), "stop requested");
      } }, "Stop");
      const compare = h("button", { type: "button", dataset: { action: "compare-top" }, onclick: () => {
        const ids = s.trials.filter((t) => t.state === "completed").slice(0, 5).map((t) => t.task);
        if (ids.length) window.location.hash = "#/compare" + TY.qs({ ids: ids.join(",") });
      } }, "Compare the top 5");
      head.replaceChildren(
        h("div", { class: "actions" }, ["pending", "running"].includes(s.status) ? stop : null, compare),
        TY.facts([
          ["name", s.name], ["status", TY.badge(s.status)], ["message", s.message], ["objective", objectiveLabel(s)],
          ["strategy", s.strategy], ["sampler", s.sampler ? `${s.sampler.name || "default"} ${JSON.stringify(s.sampler.kwargs || {})}` : "default"],
          ["pruner", s.pruner ? `${s.pruner.name || "default"} ${JSON.stringify(s.pruner.kwargs || {})}` : "default"],
          ["trials", `${s.trials.length} of ${s.total_max_jobs}, ${s.max_concurrent} at once on ${s.queue}`],
          ["states", Object.entries(s.counts).map(([k, v]) => `${v} ${k}`).join(", ")],
          ["best", s.best ? `${TY.fmt(s.best.value)}: trial ${s.best.number}` : ""],
          ["base task", TY.taskLink(s.base_task)], ["controller", TY.taskLink(s.id, `${s.id} (${s.controller_status || "?"})`)],
          ["duration", TY.duration(s.started, s.ended)],
        ]));
    }

    function drawTable(s) {
      const names = [...new Set(s.trials.flatMap((t) => Object.keys(t.params)))];
      if (!s.trials.length) { table.replaceChildren(h("p", { class: "empty" }, "no trials yet")); return; }
      table.replaceChildren(h("table", { id: "trials-table" },
        h("thead", {}, h("tr", {}, ["trial", "state", "objective", "step", ...names, "task", "note"].map((c) => h("th", {}, c)))),
        h("tbody", {}, s.trials.map((t) => h("tr", { dataset: { trial: t.number, state: t.state } },
          h("td", {}, String(t.number)),
          h("td", {}, TY.badge(t.state)),
          h("td", { class: "objective" }, TY.fmt(t.value)),
          h("td", {}, t.iteration === null ? "" : String(t.iteration)),
          names.map((n) => h("td", { class: "mono" }, TY.fmt(t.params[n]))),
          h("td", {}, TY.taskLink(t.task, t.task_name || t.task)),
          h("td", { class: "muted" }, t.reason || ""))))));
    }

    function drawOverTrials(s) {
      const done = s.trials.filter((t) => t.value !== null).sort((a, b) => a.number - b.number);
      if (!done.length) { overTrials.replaceChildren(h("p", { class: "empty" }, "no trial has completed yet")); return; }
      overTrials.replaceChildren();
      const minimize = s.objectives[0].sign.startsWith("min");
      const first = (v) => (Array.isArray(v) ? v[0] : v);
      let best = null;
      const xs = [], ys = [], bests = [];
      for (const t of done) {
        const v = first(t.value);
        best = best === null ? v : (minimize ? Math.min(best, v) : Math.max(best, v));
        xs.push(t.number); ys.push(v); bests.push(best);
      }
      plots.push(new uPlot({
        width: Math.max(320, overTrials.clientWidth - 10), height: 240,
        scales: { x: { time: false } }, axes: [{ label: "trial", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }, {}],
        series: [{ label: "trial" },
          { label: "objective", stroke: COLORS[0], width: 0, paths: () => null, points: { show: true, size: 7, fill: COLORS[0] } },
          { label: "best so far", stroke: COLORS[2], width: 2 }],
      }, [xs, ys, bests], overTrials));
    }

    function drawCurves(data) {
      const entries = Object.entries(data.curves).filter(([, c]) => c.steps.length).slice(0, 60);
      if (!entries.length) { curves.replaceChildren(h("p", { class: "empty" }, "no objective point yet")); return; }
      curves.replaceChildren();
      const tables = entries.map(([, c]) => {
        const order = c.steps.map((x, i) => i).sort((a, b) => c.steps[a] - c.steps[b]);
        return [order.map((i) => c.steps[i]), order.map((i) => c.values[i])];
      });
      plots.push(new uPlot({
        width: Math.max(320, curves.clientWidth - 10), height: 240,
        scales: { x: { time: false } }, axes: [{ label: "step", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, {}], legend: { show: false },
        series: [{ label: "step" }, ...entries.map(([n, c], i) => ({
          label: `trial ${n}`, stroke: c.state === "pruned" ? "#c9ccd4" : COLORS[i % COLORS.length], width: c.state === "pruned" ? 1 : 1.5, spanGaps: true,
        }))],
      }, uPlot.join(tables), curves));
    }

    /* One vertical axis per parameter and one for the objective; one line per trial with a value. */
    function drawParallel(s) {
      const done = s.trials.filter((t) => t.value !== null);
      const names = [...new Set(done.flatMap((t) => Object.keys(t.params)))];
      if (!done.length || !names.length) { parallel.replaceChildren(h("p", { class: "empty" }, "no trial has completed yet")); return; }
      const logScale = new Set(s.space.filter((p) => p.type === "LogUniformParameterRange").map((p) => p.name));
      const first = (v) => (Array.isArray(v) ? v[0] : v);
      const axes = [...names.map((n) => ({ name: n, get: (t) => t.params[n] })), { name: "objective", get: (t) => first(t.value) }];
      for (const axis of axes) {
        const values = done.map(axis.get).filter((v) => v !== undefined);
        const numeric = values.every((v) => typeof v === "number");
        if (numeric) {
          const log = logScale.has(axis.name) && values.every((v) => v > 0);
          const f = (v) => (log ? Math.log10(v) : v);
          const lo = Math.min(...values.map(f)), hi = Math.max(...values.map(f));
          axis.pos = (v) => (v === undefined ? null : hi === lo ? 0.5 : (f(v) - lo) / (hi - lo));
          axis.ticks = [[0, TY.fmt(log ? 10 ** lo : lo)], [1, TY.fmt(log ? 10 ** hi : hi)]];
        } else {
          const cats = [...new Set(values.map((v) => JSON.stringify(v)))];
          axis.pos = (v) => (v === undefined ? null : cats.length === 1 ? 0.5 : cats.indexOf(JSON.stringify(v)) / (cats.length - 1));
          axis.ticks = cats.map((c, i) => [cats.length === 1 ? 0.5 : i / (cats.length - 1), c]);
        }
      }
      const width = Math.max(480, parallel.clientWidth - 20), height = 280, top = 24, bottom = 30, left = 60, right = 60;
      const x = (i) => left + (i * (width - left - right)) / Math.max(1, axes.length - 1);
      const y = (p) => top + (1 - p) * (height - top - bottom);
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("width", width); svg.setAttribute("height", height); svg.setAttribute("id", "parallel-svg");
      const el = (tag, attrs, text) => {
        const node = document.createElementNS(SVG, tag);
        for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
        if (text !== undefined) node.textContent = text;
        svg.appendChild(node);
        return node;
      };
      const objectiveAxis = axes[axes.length - 1];
      const minimize = s.objectives[0].sign.startsWith("min");
      for (const t of done) {
        const points = axes.map((a, i) => [x(i), a.pos(a.get(t))]).filter(([, p]) => p !== null).map(([px, p]) => `${px},${y(p)}`);
        const score = objectiveAxis.pos(first(t.value));
        const good = minimize ? 1 - score : score;
        const color = `hsl(${Math.round(good * 220)}, 70%, 45%)`;
        const line = el("polyline", { points: points.join(" "), fill: "none", stroke: color, "stroke-width": 1.5, "stroke-opacity": 0.8, "data-trial": t.number });
        const title = document.createElementNS(SVG, "title");
        title.textContent = `trial ${t.number}: ${TY.fmt(t.value)}`;
        line.appendChild(title);
      }
      axes.forEach((a, i) => {
        el("line", { x1: x(i), x2: x(i), y1: y(0), y2: y(1), stroke: "#333", "stroke-width": 1 });
        el("text", { x: x(i), y: height - 8, "text-anchor": "middle", "font-size": 11, class: "axis-name" }, a.name);
        for (const [p, label] of a.ticks) el("text", { x: x(i) + 4, y: y(p) + 4, "font-size": 10, fill: "#555" }, label);
      });
      parallel.replaceChildren(svg);
    }

    const refresh = TY.throttle(() => load().catch((e) => TY.toast(e.message, "error")), 700);
    refresh();
    const off = TY.onChange((ev) => {
      if ((ev.kind === "study" && ev.task === id) || tasks.has(ev.task) || ev.kind === "resync") refresh();
    });
    return () => { off(); for (const p of plots.splice(0)) p.destroy(); };
  };
})();
