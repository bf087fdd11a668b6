"use strict";
/* The task page: facts, parameters (editable on drafts), the live log, metric charts (uPlot),
   artifacts, outputs and environment. One EventSource brings log lines, metric points and
   status changes as they happen. */
(function () {
  const h = TY.h;
  const COLORS = ["#2f6fde", "#e5532e", "#2e9e57", "#a64fc9", "#e59b12", "#1fa3a3", "#d64090", "#6b7385"];

  /* Metric charts: one uPlot per title, one line per series, x = step. */
  class Charts {
    constructor(el) {
      this.el = el;
      this.data = {}; // title -> series -> {steps, values}
      this.plots = {}; // title -> {plot, names, box}
      this.pending = false;
    }
    load(charts) {
      this.data = {};
      for (const [title, series] of Object.entries(charts)) {
        this.data[title] = {};
        for (const [name, s] of Object.entries(series)) this.data[title][name] = { steps: s.steps.slice(), values: s.values.slice() };
      }
      this.draw();
    }
    add(points) {
      for (const p of points) {
        const title = (this.data[p.title] = this.data[p.title] || {});
        const s = (title[p.series] = title[p.series] || { steps: [], values: [] });
        s.steps.push(p.step === null ? s.steps.length : p.step);
        s.values.push(p.value);
      }
      if (!this.pending) {
        this.pending = true;
        requestAnimationFrame(() => { this.pending = false; this.draw(); });
      }
    }
    aligned(title) {
      const names = Object.keys(this.data[title]).sort();
      const tables = names.map((n) => {
        const s = this.data[title][n];
        const order = s.steps.map((x, i) => i).sort((a, b) => s.steps[a] - s.steps[b]);
        return [order.map((i) => s.steps[i]), order.map((i) => s.values[i])];
      });
      return { names, data: uPlot.join(tables) };
    }
    draw() {
      const titles = Object.keys(this.data).sort();
      if (!titles.length) { this.el.replaceChildren(h("p", { class: "empty" }, "no metrics reported yet")); return; }
      if (this.el.querySelector(".empty")) this.el.replaceChildren();
      for (const title of titles) {
        const { names, data } = this.aligned(title);
        const known = this.plots[title];
        if (known && known.names.join("\u0000") === names.join("\u0000")) { known.plot.setData(data); continue; }
        if (known) { known.plot.destroy(); known.box.remove(); }
        const box = h("div", { class: "chart", dataset: { title } }, h("h3", {}, title));
        this.el.appendChild(box);
        const width = Math.max(320, Math.min(560, this.el.clientWidth - 20));
        const plot = new uPlot({
          width, height: 220,
          scales: { x: { time: false } },
          axes: [{ label: "step" }, {}],
          series: [{ label: "step" }, ...names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
        }, data, box);
        this.plots[title] = { plot, names, box };
      }
    }
    destroy() { for (const p of Object.values(this.plots)) p.plot.destroy(); }
  }

  function paramsEditor(task, onSaved) {
    const entries = Object.entries(task.parameters || {});
    const editable = task.status === "draft" && !document.body.classList.contains("readonly");
    if (!editable) {
      if (!entries.length) return h("p", { class: "empty" }, "no parameters");
      return h("table", { class: "params" }, h("tbody", {}, entries.map(([k, v]) => h("tr", {}, h("td", { class: "mono" }, k), h("td", { class: "mono" }, JSON.stringify(v))))));
    }
    const rows = h("tbody", {});
    const addRow = (k, v) => rows.appendChild(h("tr", {},
      h("td", {}, h("input", { class: "mono key", value: k, placeholder: "Section/name" })),
      h("td", {}, h("input", { class: "mono val", value: v === undefined ? "" : JSON.stringify(v), placeholder: "JSON value, or text" })),
      h("td", {}, h("button", { type: "button", onclick: (ev) => ev.target.closest("tr").remove() }, "×"))));
    entries.forEach(([k, v]) => addRow(k, v));
    const save = async () => {
      const params = {};
      for (const tr of rows.children) {
        const key = tr.querySelector(".key").value.trim();
        const raw = tr.querySelector(".val").value;
        if (!key) continue;
        try { params[key] = JSON.parse(raw); } catch (e) { params[key] = raw; }
      }
      const saved = await TY.act(() => TY.api("PATCH", `/api/tasks/${task.id}`, { parameters: params }), "parameters saved");
      if (saved) onSaved(saved);
    };
    return h("div", {},
      h("table", { class: "params" }, h("thead", {}, h("tr", {}, h("th", {}, "key"), h("th", {}, "value"), h("th", {}))), rows),
      h("div", { class: "toolbar", style: "margin-top:8px" },
        h("button", { type: "button", onclick: () => addRow("", undefined) }, "Add parameter"),
        h("button", { type: "button", class: "primary", id: "save-params", onclick: save }, "Save parameters")));
  }

  function artifactsView(task) {
    const arts = Object.values(task.artifacts || {});
    if (!arts.length) return h("p", { class: "empty" }, "no artifacts");
    const url = (a) => `/api/tasks/${task.id}/artifacts/${encodeURIComponent(a.name)}`;
    const table = h("table", { id: "artifacts" },
      h("thead", {}, h("tr", {}, ["name", "size", "sha256", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, arts.map((a) => h("tr", {},
        h("td", {}, a.name), h("td", {}, TY.bytes(a.size)), h("td", { class: "mono" }, (a.sha256 || "").slice(0, 16)),
        h("td", {}, h("a", { href: url(a), download: "" }, "download"))))));
    // images, tables and plots a task reported (e.g. trainyard.clearml's Logger) are shown (reports.js)
    return h("div", {}, table, TY.reportsView(task, arts, url));
  }

  function outputsView(task) {
    const outs = Object.entries(task.outputs || {});
    if (!outs.length) return h("p", { class: "empty" }, "no outputs");
    return h("table", { id: "outputs" }, h("tbody", {}, outs.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", { class: "mono" }, JSON.stringify(v))))));
  }

  function environmentView(task) {
    const s = task.script || {};
    return h("div", {},
      TY.facts([
        ["repository", s.repository], ["branch", s.branch], ["commit", s.commit], ["entry point", s.entry_point],
        ["command", s.command ? s.command.join(" ") : null], ["working dir", s.working_dir], ["python", s.python],
        ["requirements", (s.requirements || []).join(", ")], ["docker image", task.container && task.container.image],
        ["mode", task.execution && task.execution.mode], ["uncommitted diff", s.diff ? `${s.diff.split("\n").length} lines` : null],
      ]),
      Object.keys((task.runtime || {}).environment || {}).length ? [h("h2", { style: "margin-top:10px" }, "as built by the worker"), TY.json(task.runtime.environment)] : null);
  }

  TY.pages.task = function taskPage(main, params, id) {
    const title = h("h1", {}, "task ", h("span", { class: "mono" }, id));
    const facts = h("div", {});
    const paramBox = h("div", {});
    const logBox = h("pre", { class: "log", id: "log" });
    const follow = h("input", { type: "checkbox", checked: true, id: "follow" });
    const chartBox = h("div", { class: "charts", id: "charts" });
    const artBox = h("div", {});
    const outBox = h("div", {});
    const envBox = h("div", {});
    main.replaceChildren(title,
      h("div", { class: "grid2" },
        h("div", { class: "panel" }, h("h2", {}, "Overview"), facts),
        h("div", { class: "panel" }, h("h2", {}, "Parameters"), paramBox)),
      h("div", { class: "panel" }, h("h2", {}, "Log ", h("label", { class: "muted", style: "font-weight:normal" }, follow, " follow")), logBox),
      h("div", { class: "panel" }, h("h2", {}, "Metrics"), chartBox),
      h("div", { class: "grid2" },
        h("div", { class: "panel" }, h("h2", {}, "Artifacts"), artBox),
        h("div", { class: "panel" }, h("h2", {}, "Outputs"), outBox)),
      h("div", { class: "panel" }, h("h2", {}, "Environment"), envBox));
    const charts = new Charts(chartBox);
    let task = null;
    let source = null;
    let closed = false;

    function render(t) {
      task = t;
      title.replaceChildren(t.name, " ", h("span", { id: "task-status" }, TY.badge(t.status)), TY.taskActions(t, reload));
      const rt = t.runtime || {};
      facts.replaceChildren(TY.facts([
        ["id", h("span", { class: "mono" }, t.id)], ["project", t.project], ["type", t.type], ["user", t.user],
        ["queue", t.queue ? h("a", { href: `#/queues/${encodeURIComponent(t.queue)}` }, t.queue) : null], ["priority", t.queue ? String(t.priority) : null],
        ["parent", t.parent ? TY.taskLink(t.parent) : null], ["tags", (t.tags || []).join(", ")],
        ["created", TY.time(t.created)], ["started", TY.time(t.started)], ["ended", TY.time(t.ended)],
        ["duration", h("span", { id: "duration" }, TY.duration(t.started, t.ended))], ["worker", rt.worker ? `${rt.worker} on ${rt.host}` : null],
        ["GPUs", (rt.gpus || []).join(", ")], ["attempt", rt.attempt ? String(rt.attempt) : null],
        ["exit code", rt.exit_code === null || rt.exit_code === undefined ? null : String(rt.exit_code)],
        ["message", t.status_message], ["error", rt.error],
        ["full log", rt.log_uri ? h("a", { href: `/api/tasks/${t.id}/log/file`, id: "log-file" }, "download") : null],
      ]));
      if (!paramBox.contains(document.activeElement)) paramBox.replaceChildren(paramsEditor(t, render));
      artBox.replaceChildren(artifactsView(t));
      outBox.replaceChildren(outputsView(t));
      envBox.replaceChildren(environmentView(t));
    }
    async function reload() {
      if (closed) return;
      try { render(await TY.get(`/api/tasks/${id}`)); } catch (e) {
        if (e.status === 404) { main.replaceChildren(h("h1", {}, "task not found"), h("p", {}, e.message)); closed = true; if (source) source.close(); }
        else TY.toast(e.message, "error");
      }
    }
    const reloadSoon = TY.throttle(reload, 300);

    function appendLines(lines) {
      const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 30;
      const frag = document.createDocumentFragment();
      for (const ln of lines) frag.appendChild(h("span", { class: ln.stream }, ln.text + "\n"));
      logBox.appendChild(frag);
      if (follow.checked && atBottom !== null) logBox.scrollTop = logBox.scrollHeight;
    }

    (async () => {
      await reload();
      if (closed) return;
      const metrics = await TY.get(`/api/tasks/${id}/metrics`);
      charts.load(metrics.charts);
      if (closed) return;
      source = new EventSource(`/api/tasks/${id}/stream` + TY.qs({ metric_after: metrics.last_id || "0-0" }));
      source.addEventListener("log", (ev) => appendLines(JSON.parse(ev.data).lines));
      source.addEventListener("metric", (ev) => charts.add(JSON.parse(ev.data).points));
      source.addEventListener("task", (ev) => {
        const s = JSON.parse(ev.data);
        if (task && ["completed", "failed", "aborted"].includes(task.status) && s.status === "draft") logBox.replaceChildren();
        if (!task || s.status !== task.status || s.abort_requested !== task.abort_requested) reloadSoon();
      });
      source.addEventListener("deleted", () => reload());
    })().catch((e) => TY.toast(e.message, "error"));

    const ticker = setInterval(() => { // a running task's duration counts up
      const el = document.getElementById("duration");
      if (el && task && task.started && !task.ended) el.textContent = TY.duration(task.started, null);
    }, 1000);
    return () => { closed = true; clearInterval(ticker); if (source) source.close(); charts.destroy(); };
  };
})();
