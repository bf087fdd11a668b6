"use strict";
/* Compare any set of tasks (#/compare?ids=a,b,c): parameters side by side with the rows that
   differ highlighted, scalars overlaid per title (one line per task and series), outputs side by side. */
(function () {
  const h = TY.h;
  const COLORS = ["#2f6fde", "#e5532e", "#2e9e57", "#a64fc9", "#e59b12", "#1fa3a3", "#d64090", "#6b7385"];

  TY.pages.compare = function comparePage(main, params) {
    const ids = (params.get("ids") || "").split(",").filter(Boolean);
    const body = h("div", {}, h("p", { class: "empty" }, "loading…"));
    main.replaceChildren(h("h1", {}, "Compare"), body);
    const plots = [];
    if (!ids.length) {
      body.replaceChildren(h("p", { class: "empty" }, "select tasks in the tasks list, then Compare"));
      return null;
    }

    async function load() {
      const data = await TY.get("/api/compare" + TY.qs({ ids: ids.join(",") }));
      for (const p of plots.splice(0)) p.destroy();
      const onlyDiffs = h("input", { type: "checkbox", id: "only-differences" });
      const heads = h("tr", {}, h("th", {}, ""), data.tasks.map((t) => h("th", {}, TY.taskLink(t.id, t.name), " ", TY.badge(t.status))));
      const paramRows = data.parameters.map((p) => h("tr", { class: p.differs ? "differs" : "", dataset: { key: p.key } },
        h("td", { class: "mono" }, p.key),
        p.values.map((v, i) => h("td", { class: "mono" }, p.present[i] ? TY.fmt(v) : "—"))));
      const paramTable = h("table", { id: "compare-params", class: "compare" }, h("thead", {}, heads), h("tbody", {}, paramRows));
      onlyDiffs.addEventListener("change", () => paramTable.classList.toggle("only-differences", onlyDiffs.checked));
      const outputs = data.outputs.length
        ? h("table", { id: "compare-outputs", class: "compare" }, h("thead", {}, heads.cloneNode(true)),
          h("tbody", {}, data.outputs.map((o) => h("tr", { class: o.differs ? "differs" : "", dataset: { key: o.key } },
            h("td", { class: "mono" }, o.key), o.values.map((v) => h("td", { class: "mono" }, TY.fmt(v)))))))
        : h("p", { class: "empty" }, "no outputs");
      const charts = h("div", { class: "charts", id: "compare-charts" });
      body.replaceChildren(
        h("div", { class: "panel" }, h("h2", {}, "Parameters"),
          h("label", { class: "inline" }, onlyDiffs, " only the differences"), paramTable),
        h("div", { class: "panel" }, h("h2", {}, "Scalars"), charts),
        h("div", { class: "panel" }, h("h2", {}, "Outputs"), outputs));
      const names = Object.fromEntries(data.tasks.map((t) => [t.id, t.name]));
      const titles = Object.keys(data.charts).sort();
      if (!titles.length) charts.replaceChildren(h("p", { class: "empty" }, "no metrics reported"));
      for (const title of titles) {
        const lines = [];
        for (const [taskId, perSeries] of Object.entries(data.charts[title])) {
          for (const [series, s] of Object.entries(perSeries)) lines.push({ label: `${names[taskId]} · ${series}`, s });
        }
        const tables = lines.map(({ s }) => {
          const order = s.steps.map((x, i) => i).sort((a, b) => s.steps[a] - s.steps[b]);
          return [order.map((i) => s.steps[i]), order.map((i) => s.values[i])];
        });
        const box = h("div", { class: "chart", dataset: { title } }, h("h3", {}, title));
        charts.appendChild(box);
        plots.push(new uPlot({
          width: Math.max(320, Math.min(560, charts.clientWidth - 20)), height: 220,
          scales: { x: { time: false } }, axes: [{ label: "step" }, {}],
          series: [{ label: "step" }, ...lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
        }, uPlot.join(tables), box));
      }
    }

    const refresh = TY.throttle(() => load().catch((e) => body.replaceChildren(h("p", { class: "errors" }, e.message))), 1000);
    refresh();
    const off = TY.onChange((ev) => { if (ids.includes(ev.task)) refresh(); });
    return () => { off(); for (const p of plots.splice(0)) p.destroy(); };
  };
})();
