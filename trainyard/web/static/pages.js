"use strict";
/* Pages: tasks (list, filters, actions), queues (list, one queue's waiting tasks), workers. */
(function () {
  const h = TY.h;
  const STATUSES = ["", "draft", "queued", "running", "completed", "failed", "aborted"];

  /* A command line split into argv the way a shell would quote it (it is never run by a shell). */
  TY.splitArgs = function splitArgs(text) {
    const out = [];
    let cur = "", quote = null, any = false;
    for (let i = 0; i < text.length; i += 1) {
      const c = text[i];
      if (quote) {
        if (c === quote) quote = null;
        else if (c === "\\" && quote === '"' && i + 1 < text.length) cur += text[++i];
        else cur += c;
      } else if (c === "'" || c === '"') { quote = c; any = true; }
      else if (c === "\\" && i + 1 < text.length) { cur += text[++i]; any = true; }
      else if (/\s/.test(c)) { if (cur || any) out.push(cur); cur = ""; any = false; }
      else cur += c;
    }
    if (cur || any) out.push(cur);
    return out;
  };

  async function queueNames() {
    const page = await TY.get("/api/queues?limit=500");
    return page.items.map((q) => q.name);
  }

  TY.enqueueDialog = async function enqueueDialog(task) {
    const names = await queueNames();
    if (!names.length) { TY.toast("create a queue first (Queues page)", "error"); return null; }
    const values = await TY.modal(`Enqueue ${task.name}`, [
      { name: "queue", label: "queue", options: names, value: task.queue || names[0] },
      { name: "priority", label: "priority (higher runs first)", value: "0", type: "number" },
    ], "Enqueue");
    if (!values) return null;
    return TY.act(() => TY.post(`/api/tasks/${task.id}/enqueue`, { queue: values.queue, priority: Number(values.priority || 0) }), "enqueued");
  };

  TY.cloneDialog = async function cloneDialog(task) {
    const values = await TY.modal(`Clone ${task.name}`, [{ name: "name", label: "name of the copy", value: `${task.name} (copy)` }], "Clone");
    if (!values) return null;
    const clone = await TY.act(() => TY.post(`/api/tasks/${task.id}/clone`, { name: values.name }), "cloned: a new draft");
    if (clone) window.location.hash = `#/tasks/${clone.id}`;
    return clone;
  };

  /* The buttons for the actions the server says the task allows now (task.actions: the state
     machine's answer, so the rules live in one place). */
  TY.taskActions = function taskActions(task, after) {
    const done = () => after && after();
    const b = (label, fn, cls) => h("button", { type: "button", class: `admin-only ${cls || ""}`, dataset: { action: label.toLowerCase() }, onclick: async (ev) => { ev.stopPropagation(); await fn(); done(); } }, label);
    const buttons = {
      enqueue: () => b("Enqueue", () => TY.enqueueDialog(task), "primary"),
      dequeue: () => b("Dequeue", () => TY.act(() => TY.post(`/api/tasks/${task.id}/dequeue`), "back to draft")),
      abort: () => b("Abort", () => TY.act(() => TY.post(`/api/tasks/${task.id}/abort`), "abort requested"), "danger"),
      reset: () => b("Reset", () => TY.act(() => TY.post(`/api/tasks/${task.id}/reset`), "reset to draft")),
      clone: () => b("Clone", () => TY.cloneDialog(task)),
      delete: () => b("Delete", async () => {
        if (window.confirm(`Delete task ${task.name} (${task.id})?`)) await TY.act(() => TY.api("DELETE", `/api/tasks/${task.id}`), "deleted");
      }, "danger"),
    };
    const out = (task.actions || []).filter((a) => buttons[a]).map((a) => buttons[a]());
    return h("div", { class: "actions" }, out);
  };

  async function newTaskDialog() {
    const names = await queueNames();
    const values = await TY.modal("New task", [
      { name: "name", label: "name", value: "" },
      { name: "project", label: "project", value: "default" },
      { name: "command", label: "command (argv, quoted as in a shell; never run by one)", value: "", placeholder: "python train.py --lr 0.1" },
      { name: "queue", label: "enqueue on (empty: keep as a draft)", options: ["", ...names], value: "" },
    ], "Create");
    if (!values) return;
    const task = await TY.act(() => TY.post("/api/tasks", { name: values.name, project: values.project, command: TY.splitArgs(values.command) }));
    if (!task) return;
    if (values.queue) await TY.act(() => TY.post(`/api/tasks/${task.id}/enqueue`, { queue: values.queue }));
    window.location.hash = `#/tasks/${task.id}`;
  }

  /* -- tasks ------------------------------------------------------------------------------- */
  TY.pages.tasks = function tasksPage(main, params) {
    const filters = {
      project: params.get("project") || "", status: params.get("status") || "", tag: params.get("tag") || "",
      queue: params.get("queue") || "", name: params.get("name") || "",
    };
    const offset = Number(params.get("offset") || 0);
    const go = (newOffset) => { window.location.hash = "#/tasks" + TY.qs({ ...filters, offset: newOffset || null }); };
    const field = (name, placeholder) => h("input", { name, value: filters[name], placeholder, size: 14 });
    const form = h("form", { class: "filters", onsubmit: (ev) => {
      ev.preventDefault();
      for (const key of Object.keys(filters)) filters[key] = form.elements[key].value.trim();
      go(0);
    } },
      field("name", "name (glob)"), field("project", "project"),
      h("select", { name: "status" }, STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s || "any status"))),
      field("queue", "queue"), field("tag", "tag"),
      h("button", { type: "submit" }, "Filter"),
      h("button", { type: "button", id: "compare-selected", disabled: true, onclick: () => {
        window.location.hash = "#/compare" + TY.qs({ ids: [...selected].join(",") });
      } }, "Compare selected"),
      h("span", { class: "spacer" }),
      h("button", { type: "button", class: "primary admin-only", onclick: newTaskDialog }, "New task"));
    const body = h("div", {}, h("p", { class: "empty" }, "loading…"));
    main.replaceChildren(h("h1", {}, "Tasks"), h("div", { class: "panel" }, form, body));
    const selected = new Set();
    const pick = (id, on) => {
      if (on) selected.add(id); else selected.delete(id);
      const button = form.querySelector("#compare-selected");
      button.disabled = selected.size < 2;
      button.textContent = selected.size ? `Compare selected (${selected.size})` : "Compare selected";
    };

    async function load() {
      const page = await TY.get("/api/tasks" + TY.qs({ ...filters, limit: 50, offset }));
      if (!page.items.length) { body.replaceChildren(h("p", { class: "empty" }, "no tasks match")); return; }
      body.replaceChildren(
        h("table", { id: "tasks-table" },
          h("thead", {}, h("tr", {}, ["", "name", "status", "project", "queue", "worker", "created", "duration", ""].map((c) => h("th", {}, c)))),
          h("tbody", {}, page.items.map((t) => h("tr", { dataset: { task: t.id } },
            h("td", {}, h("input", { type: "checkbox", class: "pick", title: "select to compare", checked: selected.has(t.id), onchange: (ev) => pick(t.id, ev.target.checked) })),
            h("td", {}, TY.taskLink(t.id, t.name), h("div", { class: "muted mono" }, t.id)),
            h("td", {}, TY.badge(t.status)),
            h("td", {}, t.project),
            h("td", {}, t.queue || ""),
            h("td", {}, t.worker || ""),
            h("td", { title: TY.time(t.created) }, TY.ago(t.created)),
            h("td", {}, TY.duration(t.started, t.ended)),
            h("td", {}, TY.taskActions(t, refresh)))))),
        TY.pager(page, go));
    }
    const refresh = TY.throttle(() => load().catch((e) => TY.toast(e.message, "error")), 500);
    refresh();
    return TY.onChange((ev) => { if (ev.task || ev.kind === "resync") refresh(); });
  };

  /* -- queues ------------------------------------------------------------------------------ */
  TY.pages.queues = function queuesPage(main, params) {
    const offset = Number(params.get("offset") || 0);
    const body = h("div", {}, h("p", { class: "empty" }, "loading…"));
    const create = async () => {
      const v = await TY.modal("New queue", [
        { name: "name", label: "name", value: "" },
        { name: "description", label: "description", value: "" },
        { name: "max_running", label: "at most this many running at once (0: no limit)", value: "0", type: "number" },
      ], "Create");
      if (v) await TY.act(() => TY.post("/api/queues", { name: v.name, description: v.description, max_running: Number(v.max_running || 0) }), "queue created");
      refresh();
    };
    main.replaceChildren(h("h1", {}, "Queues", h("button", { type: "button", class: "primary admin-only", onclick: create }, "New queue")), h("div", { class: "panel" }, body));
    async function load() {
      const page = await TY.get("/api/queues" + TY.qs({ limit: 100, offset }));
      if (!page.items.length) { body.replaceChildren(h("p", { class: "empty" }, "no queues yet")); return; }
      body.replaceChildren(
        h("table", { id: "queues-table" },
          h("thead", {}, h("tr", {}, ["queue", "waiting", "running", "limit", "head waited", "description"].map((c) => h("th", {}, c)))),
          h("tbody", {}, page.items.map((q) => h("tr", { dataset: { queue: q.name } },
            h("td", {}, h("a", { href: `#/queues/${encodeURIComponent(q.name)}` }, q.name)),
            h("td", { class: "length" }, String(q.length)),
            h("td", {}, String(q.running)),
            h("td", {}, q.max_running ? String(q.max_running) : "—"),
            h("td", {}, q.oldest_wait_s === null ? "" : TY.duration(Date.now() / 1000 - q.oldest_wait_s, null)),
            h("td", { class: "muted" }, q.description))))),
        TY.pager(page, (o) => { window.location.hash = "#/queues" + TY.qs({ offset: o || null }); }));
    }
    const refresh = TY.throttle(() => load().catch((e) => TY.toast(e.message, "error")), 500);
    refresh();
    return TY.onChange((ev) => { if (ev.queue || ev.kind === "resync") refresh(); });
  };

  TY.pages.queue = function queuePage(main, params, name) {
    const offset = Number(params.get("offset") || 0);
    const head = h("div", {});
    const body = h("div", {}, h("p", { class: "empty" }, "loading…"));
    const limit = async () => {
      const v = await TY.modal(`Limit ${name}`, [{ name: "max_running", label: "at most this many running at once (0: no limit)", value: "0", type: "number" }], "Save");
      if (v) await TY.act(() => TY.api("PATCH", `/api/queues/${encodeURIComponent(name)}`, { max_running: Number(v.max_running || 0) }), "limit saved");
      refresh();
    };
    const remove = async () => {
      if (!window.confirm(`Delete queue ${name}? Tasks still waiting in it go back to draft.`)) return;
      const done = await TY.act(() => TY.api("DELETE", `/api/queues/${encodeURIComponent(name)}?force=true`), "queue deleted");
      if (done) window.location.hash = "#/queues";
    };
    main.replaceChildren(
      h("h1", {}, h("a", { href: "#/queues" }, "Queues"), " / ", name,
        h("div", { class: "actions admin-only" },
          h("button", { type: "button", dataset: { action: "limit" }, onclick: limit }, "Limit…"),
          h("button", { type: "button", class: "danger", dataset: { action: "delete" }, onclick: remove }, "Delete"))),
      h("div", { class: "panel" }, head, body));
    const move = (taskId, to) => TY.act(() => TY.post(`/api/queues/${encodeURIComponent(name)}/move`, { task_id: taskId, to }), "moved").then(refresh);
    async function load() {
      const page = await TY.get(`/api/queues/${encodeURIComponent(name)}` + TY.qs({ limit: 50, offset }));
      const q = page.queue;
      head.replaceChildren(TY.facts([["waiting", String(q.length)], ["running", String(q.running)], ["limit", q.max_running ? String(q.max_running) : "none"], ["description", q.description]]));
      if (!page.items.length) { body.replaceChildren(h("p", { class: "empty" }, "nothing waiting")); return; }
      body.replaceChildren(
        h("table", { id: "queue-entries" },
          h("thead", {}, h("tr", {}, ["#", "task", "priority", "queued", ""].map((c) => h("th", {}, c)))),
          h("tbody", {}, page.items.map((e) => h("tr", { dataset: { task: e.task_id } },
            h("td", {}, String(e.position)),
            h("td", {}, TY.taskLink(e.task_id, e.task ? e.task.name : e.task_id)),
            h("td", {}, String(e.priority)),
            h("td", {}, e.task ? TY.ago(e.task.queued_at) : ""),
            h("td", {}, h("div", { class: "actions admin-only" },
              h("button", { type: "button", onclick: () => move(e.task_id, "top") }, "Top"),
              h("button", { type: "button", onclick: () => move(e.task_id, "bottom") }, "Bottom"),
              h("button", { type: "button", onclick: async () => {
                const v = await TY.modal("Move to position", [{ name: "pos", label: "0-based position", value: String(e.position), type: "number" }], "Move");
                if (v) move(e.task_id, Number(v.pos));
              } }, "Move…"),
              h("button", { type: "button", onclick: () => TY.act(() => TY.post(`/api/tasks/${e.task_id}/dequeue`), "back to draft").then(refresh) }, "Dequeue"),
              h("button", { type: "button", class: "danger", onclick: () => TY.act(() => TY.post(`/api/tasks/${e.task_id}/abort`), "aborted").then(refresh) }, "Abort"))))))),
        TY.pager(page, (o) => { window.location.hash = `#/queues/${encodeURIComponent(name)}` + TY.qs({ offset: o || null }); }));
    }
    const refresh = TY.throttle(() => load().catch((e) => TY.toast(e.message, "error")), 400);
    refresh();
    return TY.onChange((ev) => { if (ev.queue === name || ev.kind === "resync") refresh(); });
  };

  /* -- workers ----------------------------------------------------------------------------- */
  TY.meter = meter;
  TY.gpuCell = gpuCell;
  function meter(pct, label, cls) {
    const value = pct === null || pct === undefined ? 0 : Math.max(0, Math.min(100, pct));
    return h("div", { class: `meter ${cls || ""}` }, h("span", { style: `width:${value}%` }), h("em", {}, label));
  }
  function gpuCell(stats) {
    if (!stats || stats.gpus === undefined) return h("span", { class: "muted" }, "—");
    if (stats.gpus === null) return h("span", { class: "muted" }, stats.gpu_note || "no NVML");
    if (!stats.gpus.length) return h("span", { class: "muted" }, "CPU only");
    return h("div", {}, stats.gpus.map((g) => h("div", { class: "gpu", dataset: { gpu: g.index }, title: g.name || "" },
      h("span", {}, `#${g.index}`),
      meter(g.utilization_pct, `util ${g.utilization_pct ?? "?"}%`),
      meter(g.memory_total_mb ? (100 * g.memory_used_mb) / g.memory_total_mb : 0, `mem ${g.memory_used_mb ?? "?"}/${g.memory_total_mb ?? "?"} MB`, "mem"))));
  }

  TY.pages.workers = function workersPage(main, params) {
    const offset = Number(params.get("offset") || 0);
    const body = h("div", {}, h("p", { class: "empty" }, "loading…"));
    main.replaceChildren(h("h1", {}, "Workers"), h("div", { class: "panel" }, body));
    const command = (name, what) => {
      const sure = what === "stop" ? window.confirm(`Stop ${name}? Its current task is ended and re-queued.`) : true;
      if (sure) TY.act(() => TY.post(`/api/workers/${encodeURIComponent(name)}/${what}`), `${what} sent to ${name}`).then(refresh);
    };
    async function load() {
      const page = await TY.get("/api/workers" + TY.qs({ limit: 50, offset }));
      if (!page.items.length) { body.replaceChildren(h("p", { class: "empty" }, "no live workers (start one: trainyard worker --queue NAME)")); return; }
      body.replaceChildren(
        h("table", { id: "workers-table" },
          h("thead", {}, h("tr", {}, ["worker", "state", "queues", "current", "GPUs", "CPU / memory", "heartbeat", ""].map((c) => h("th", {}, c)))),
          h("tbody", {}, page.items.map((w) => h("tr", { dataset: { worker: w.name } },
            h("td", {}, h("a", { href: `#/workers/${encodeURIComponent(w.name)}` }, h("strong", {}, w.name)), h("div", { class: "muted" }, `${w.host} · pid ${w.pid} · ${w.mode}`)),
            h("td", {}, TY.badge(w.state), w.command ? h("div", { class: "muted" }, `asked: ${w.command}`) : null),
            h("td", {}, w.queues.join(", ")),
            h("td", {}, w.current.length ? w.current.map((id) => h("div", {}, TY.taskLink(id))) : h("span", { class: "muted" }, "idle")),
            h("td", {}, gpuCell(w.stats)),
            h("td", {}, w.stats && w.stats.cpu_percent !== undefined ? [
              meter(w.stats.cpu_percent, `CPU ${w.stats.cpu_percent ?? "?"}%`),
              w.stats.memory ? meter(w.stats.memory.percent, `mem ${w.stats.memory.percent}%`, "mem") : null] : h("span", { class: "muted" }, "—")),
            h("td", {}, `${w.heartbeat_age_s}s ago`),
            h("td", {}, h("div", { class: "actions admin-only" },
              h("button", { type: "button", dataset: { action: "drain" }, onclick: () => command(w.name, "drain") }, "Drain"),
              h("button", { type: "button", class: "danger", dataset: { action: "stop" }, onclick: () => command(w.name, "stop") }, "Stop"))))))),
        TY.pager(page, (o) => { window.location.hash = "#/workers" + TY.qs({ offset: o || null }); }));
    }
    const refresh = TY.throttle(() => load().catch((e) => TY.toast(e.message, "error")), 500);
    refresh();
    const timer = setInterval(refresh, 2000); // heartbeats (and their GPU figures) arrive every ~2 s
    const off = TY.onChange((ev) => { if (ev.kind.startsWith("worker") || ev.kind === "resync") refresh(); });
    return () => { clearInterval(timer); off(); };
  };
})();
