"use strict";
/* Pipelines: the runs list, a run's DAG (cytoscape + dagre, coloured by step status, live) and the
   YAML editor that validates as you type. */
(function () {
  const h = TY.h;
  const STEP_COLORS = {
    pending: "#b8bfcc", queued: "#2b8fd6", running: "#e59b12", completed: "#2e9e57",
    cached: "#1fa3a3", failed: "#d64040", aborted: "#a64fc9", skipped: "#cfd4dc",
  };

  TY.pages.pipelines = function pipelinesPage(main, params) {
    const offset = Number(params.get("offset") || 0);
    const files = h("div", {}, h("p", { class: "empty" }, "loading…"));
    const body = h("div", {}, h("p", { class: "empty" }, "loading…"));
    main.replaceChildren(
      h("h1", {}, "Pipelines", h("a", { href: "#/editor", class: "btn admin-only" }, "New pipeline")),
      h("div", { class: "panel" }, h("h2", {}, "Pipeline files"), files),
      h("div", { class: "panel" }, h("h2", {}, "Runs"), body));
    const fire = async (f) => {
      const result = await TY.act(() => TY.post(`/api/pipelines/${encodeURIComponent(f.name)}/trigger` + TY.qs({ project: f.project }), { inputs: {} }));
      if (result) window.location.hash = `#/runs/${result.run_id}`;
    };
    async function loadFiles() {
      try {
        const page = await TY.get("/api/pipelines?limit=100");
        if (!page.items.length) { files.replaceChildren(h("p", { class: "empty" }, "no pipeline files registered yet (create one in the editor)")); return; }
        files.replaceChildren(h("table", { id: "files-table" },
          h("thead", {}, h("tr", {}, ["pipeline", "project", "file", "updated", ""].map((c) => h("th", {}, c)))),
          h("tbody", {}, page.items.map((f) => h("tr", { dataset: { pipeline: f.name } },
            h("td", {}, h("strong", {}, f.name)), h("td", {}, f.project), h("td", { class: "muted" }, f.filename || ""),
            h("td", { title: TY.time(f.updated) }, TY.ago(f.updated)),
            h("td", {}, h("div", { class: "actions" },
              h("a", { class: "btn", href: "#/editor" + TY.qs({ pipeline: `${f.project}/${f.name}` }) }, "Open in editor"),
              h("button", { type: "button", class: "admin-only", dataset: { action: "trigger" }, onclick: () => fire(f) }, "Trigger"))))))));
      } catch (e) {
        files.replaceChildren(h("p", { class: "empty" }, e.message));
      }
    }
    async function load() {
      const page = await TY.get("/api/runs" + TY.qs({ limit: 50, offset }));
      if (!page.items.length) { body.replaceChildren(h("p", { class: "empty" }, "no pipeline runs yet")); return; }
      body.replaceChildren(
        h("table", { id: "runs-table" },
          h("thead", {}, h("tr", {}, ["pipeline", "status", "steps", "project", "created", "duration", "note"].map((c) => h("th", {}, c)))),
          h("tbody", {}, page.items.map((r) => h("tr", { dataset: { run: r.id } },
            h("td", {}, h("a", { href: `#/runs/${r.id}` }, `${r.name} v${r.version}`), h("div", { class: "muted mono" }, r.id)),
            h("td", {}, TY.badge(r.status)),
            h("td", {}, `${r.steps_done}/${r.steps_total}`),
            h("td", {}, r.project),
            h("td", { title: TY.time(r.created) }, TY.ago(r.created)),
            h("td", {}, TY.duration(r.started, r.ended)),
            h("td", { class: "muted" }, r.message || ""))))),
        TY.pager(page, (o) => { window.location.hash = "#/pipelines" + TY.qs({ offset: o || null }); }));
    }
    const refresh = TY.throttle(() => load().catch((e) => TY.toast(e.message, "error")), 500);
    loadFiles();
    refresh();
    return TY.onChange((ev) => { if (ev.kind === "pipeline" || ev.kind === "resync") { refresh(); loadFiles(); } });
  };

  /* -- test results (JUnit reports of pipeline-file steps) ------------------------------------ */
  const sumTests = (reports) => Object.fromEntries(["passed", "failed", "errors", "skipped"].map((k) => [k, reports.reduce((a, r) => a + (r[k] || 0), 0)]));
  const testCounts = (t) => `${t.passed} passed, ${t.failed + t.errors} failed, ${t.skipped} skipped`;

  function testsView(reports) {
    if (!reports || !reports.length) return null;
    return h("div", { class: "tests" }, reports.map((r) => h("div", { class: "test-report", dataset: { step: r.step } },
      h("h3", {}, `${r.step}: `, h("span", { class: r.failed + r.errors ? "bad" : "good" }, testCounts(r))),
      r.failures.length ? h("ul", { class: "test-failures" }, r.failures.map((f) => h("li", { dataset: { test: f.name } },
        h("span", { class: "mono" }, f.classname ? `${f.classname}.${f.name}` : f.name), " ",
        h("span", { class: "muted" }, f.message)))) : null,
      (r.problems || []).map((p) => h("p", { class: "muted" }, p)))));
  }

  /* -- one run: the DAG -------------------------------------------------------------------- */
  TY.pages.run = function runPage(main, params, id) {
    const title = h("h1", {}, "run ", h("span", { class: "mono" }, id));
    const graph = h("div", { id: "dag" });
    const side = h("div", { id: "step-panel" }, h("p", { class: "empty" }, "click a step"));
    const table = h("div", {});
    const legend = h("div", { class: "legend" }, Object.entries(STEP_COLORS).map(([s, c]) => h("span", {}, h("i", { style: `background:${c}` }), s)));
    main.replaceChildren(title,
      h("div", { class: "grid2 wide-left" },
        h("div", { class: "panel" }, graph, legend),
        h("div", { class: "panel" }, h("h2", {}, "Step"), side)),
      h("div", { class: "panel" }, h("h2", {}, "Steps"), table));
    let cy = null;
    let shape = "";
    let run = null;
    let selected = null;
    let shown = null; // the step in the side panel: redrawn with every update, so it never goes stale
    let closed = false;

    function showStep(name) {
      const n = run && run.nodes.find((x) => x.id === name);
      if (!n) return;
      shown = name;
      side.replaceChildren(h("h2", {}, n.id, " ", TY.badge(n.status)), TY.facts([
        ["kind", n.kind], ["template", n.base_task], ["queue", n.queue],
        ["task", n.task_id ? TY.taskLink(n.task_id) : null], ["attempt", n.attempt ? String(n.attempt) : null],
        ["duration", TY.duration(n.started, n.ended)], ["error", n.error], ["note", n.message],
      ]), testsView(n.tests) || "");
    }

    function draw(r) {
      run = r;
      title.replaceChildren(...[`${r.name} v${r.version} `, h("span", { id: "run-status" }, TY.badge(r.status)),
        h("div", { class: "actions admin-only" },
          ["running", "pending"].includes(r.status) ? h("button", { type: "button", class: "danger", onclick: () => TY.act(() => TY.post(`/api/runs/${id}/abort`), "stop requested") }, "Abort") : null,
          ["failed", "aborted"].includes(r.status) && r.controller_queue ? h("button", { type: "button", onclick: () => TY.act(() => TY.post(`/api/runs/${id}/retry`), "retrying") }, "Retry failed steps") : null),
        r.message ? h("span", { class: "muted", style: "font-size:13px;font-weight:normal" }, r.message) : null,
        r.tests ? h("span", { id: "run-tests", class: r.tests.failed + r.tests.errors ? "bad" : "good", style: "font-size:13px;font-weight:normal" }, ` tests: ${testCounts(r.tests)}`) : null].filter((x) => x));
      const nextShape = JSON.stringify([r.nodes.map((n) => n.id), r.edges]);
      if (!cy || nextShape !== shape) {
        shape = nextShape;
        if (cy) cy.destroy();
        cy = cytoscape({
          container: graph,
          elements: [
            ...r.nodes.map((n) => ({ data: { id: n.id, label: n.id, status: n.status } })),
            ...r.edges.map((e) => ({ data: { id: `${e.source}->${e.target}`, source: e.source, target: e.target } })),
          ],
          style: [
            { selector: "node", style: {
              shape: "round-rectangle", width: (el) => Math.max(60, 8 * el.data("label").length + 20), height: 34, label: "data(label)",
              "text-valign": "center", "text-halign": "center", color: "#fff", "font-size": 13, "font-weight": 600,
              "background-color": (el) => STEP_COLORS[el.data("status")] || "#999",
            } },
            { selector: "node:selected", style: { "border-width": 3, "border-color": "#1d2330" } },
            { selector: "edge", style: { width: 2, "line-color": "#9aa3b5", "target-arrow-color": "#9aa3b5", "target-arrow-shape": "triangle", "curve-style": "bezier" } },
          ],
          layout: { name: "dagre", rankDir: "LR", nodeSep: 30, rankSep: 60 },
          userZoomingEnabled: true, boxSelectionEnabled: false, minZoom: 0.2, maxZoom: 1.3,
        });
        cy.on("tap", "node", (ev) => { selected = ev.target.id(); showStep(selected); });
        window.TY_CY = cy; // for tests and debugging: the live graph
      } else {
        for (const n of r.nodes) cy.getElementById(n.id).data("status", n.status);
      }
      graph.dataset.statuses = JSON.stringify(Object.fromEntries(r.nodes.map((n) => [n.id, n.status])));
      table.replaceChildren(h("table", { id: "steps-table" },
        h("thead", {}, h("tr", {}, ["step", "status", "task", "attempt", "duration", "tests", "note"].map((c) => h("th", {}, c)))),
        h("tbody", {}, r.nodes.map((n) => h("tr", { dataset: { step: n.id } },
          h("td", {}, n.id), h("td", {}, TY.badge(n.status)), h("td", {}, n.task_id ? TY.taskLink(n.task_id) : ""),
          h("td", {}, n.attempt ? String(n.attempt) : ""), h("td", {}, TY.duration(n.started, n.ended)),
          h("td", { class: "tests-cell" }, (n.tests || []).length ? testCounts(sumTests(n.tests)) : ""),
          h("td", { class: "muted" }, n.error || n.message || ""))))));
      const focus = selected || (r.nodes.find((n) => ["failed", "running", "queued"].includes(n.status)) || {}).id || shown;
      if (focus) showStep(focus);
    }
    async function load() {
      if (closed) return;
      try { draw(await TY.get(`/api/runs/${id}`)); } catch (e) {
        if (e.status === 404) { closed = true; main.replaceChildren(h("h1", {}, "run not found"), h("p", {}, e.message)); }
        else TY.toast(e.message, "error");
      }
    }
    const refresh = TY.throttle(load, 250);
    refresh();
    const off = TY.onChange((ev) => {
      const stepTasks = run ? run.nodes.map((n) => n.task_id) : [];
      if (ev.task === id || stepTasks.includes(ev.task) || ev.kind === "resync") refresh();
    });
    return () => { closed = true; off(); if (cy) cy.destroy(); };
  };

  /* -- the YAML editor ----------------------------------------------------------------------- */
  const SAMPLE = [
    "# A pipeline file: jobs run on the workers when the jobs they need have finished.",
    "name: my-pipeline",
    "project: default",
    "queue: default",
    "params:",
    "  lr: 0.1",
    "jobs:",
    "  prepare:",
    "    steps:",
    "      - run: echo preparing",
    "  train:",
    "    needs: [prepare]",
    "    steps:",
    "      - run: echo \"training with lr=${{ params.lr }}\"",
    "",
  ].join("\n");

  TY.pages.editor = function editorPage(main, params) {
    const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
    const text = h("textarea", { id: "yaml", spellcheck: "false", wrap: "off", "aria-label": "pipeline file (YAML)" });
    text.value = sessionStorage.getItem("ty-editor") || SAMPLE;
    const status = h("div", { id: "editor-status" });
    const createBtn = h("button", { type: "button", class: "primary admin-only", id: "create-run" }, "Create and run");
    main.replaceChildren(
      h("h1", {}, "New pipeline"),
      h("div", { class: "panel" },
        h("p", { class: "muted" }, "Write a pipeline file. It is checked as you type; errors show below with their line numbers."),
        h("div", { class: "editor" }, gutter, text),
        h("div", { class: "toolbar", style: "margin-top:10px" }, createBtn),
        status));
    let bad = new Set();
    let seq = 0;

    function paintGutter() {
      const n = text.value.split("\n").length;
      const frag = document.createDocumentFragment();
      for (let i = 1; i <= n; i += 1) frag.appendChild(h("div", { class: bad.has(i) ? "bad" : null }, String(i)));
      gutter.replaceChildren(frag);
      gutter.scrollTop = text.scrollTop;
    }
    function showErrors(errors, note) {
      bad = new Set(errors.map((e) => e.line).filter((x) => x));
      paintGutter();
      if (note) { status.replaceChildren(h("div", { class: "errors", id: "editor-errors", role: "alert" }, note)); return; }
      if (!errors.length) { status.replaceChildren(h("div", { class: "ok-note", id: "editor-ok" }, "✓ valid pipeline file")); return; }
      status.replaceChildren(h("ul", { class: "errors", id: "editor-errors", role: "alert" }, errors.map((e) =>
        h("li", { dataset: { line: e.line || "" } }, e.line ? `line ${e.line}: ` : "", e.field ? `${e.field}: ` : "", e.message))));
    }
    async function validate() {
      const mine = ++seq;
      sessionStorage.setItem("ty-editor", text.value);
      try {
        const result = await TY.post("/api/pipelines/validate", { text: text.value });
        if (mine === seq) showErrors(result.errors);
      } catch (e) {
        if (mine === seq) showErrors([], e.message);
      }
    }
    const validateSoon = TY.debounce(validate, 250);
    text.addEventListener("input", () => { paintGutter(); validateSoon(); });
    text.addEventListener("scroll", () => { gutter.scrollTop = text.scrollTop; });
    text.addEventListener("keydown", (ev) => {
      if (ev.key === "Tab") { // two spaces, as YAML wants
        ev.preventDefault();
        const { selectionStart: a, selectionEnd: b } = text;
        text.setRangeText("  ", a, b, "end");
        text.dispatchEvent(new Event("input"));
      }
    });
    createBtn.addEventListener("click", async () => {
      createBtn.disabled = true;
      try {
        const result = await TY.post("/api/pipelines", { text: text.value });
        TY.toast("pipeline created and started");
        window.location.hash = `#/runs/${result.run_id}`;
      } catch (e) {
        showErrors(e.details && e.details.length && e.details[0].message ? e.details : [], e.details && e.details.length ? null : e.message);
      } finally {
        createBtn.disabled = false;
      }
    });
    const wanted = params.get("pipeline");
    if (wanted) {
      const [project, ...rest] = wanted.split("/");
      TY.get(`/api/pipelines/${encodeURIComponent(rest.join("/"))}` + TY.qs({ project }))
        .then((entry) => { text.value = entry.text; paintGutter(); validate(); })
        .catch((e) => TY.toast(e.message, "error"));
    }
    paintGutter();
    validate();
    return () => { seq += 1; };
  };
})();
