"use strict";
/* The services page: running services, alert rules (add, remove) with what was sent, and the
   autoscaler's state per queue, its machines and its decisions with reasons. */
(function () {
  const h = TY.h;
  const KINDS = ["failed", "aborted", "completed", "worker_lost", "queue_wait", "stalled", "metric"];

  function table(id, columns, rows, empty) {
    if (!rows.length) return h("p", { class: "empty", id }, empty);
    return h("table", { id },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows));
  }

  async function addRule() {
    const v = await TY.modal("New alert rule", [
      { name: "on", label: "alert on", options: KINDS, value: "failed" },
      { name: "notify", label: "notify (Apprise URL)", placeholder: "slack://… json://… mailto://…" },
      { name: "name", label: "name" },
      { name: "project", label: "only project" },
      { name: "queue", label: "only queue" },
      { name: "minutes", label: "minutes (queue_wait, stalled)", type: "number" },
      { name: "metric", label: "metric TITLE/SERIES (metric)" },
      { name: "above", label: "above (metric)", type: "number" },
    ], "Add rule");
    if (!v) return;
    const body = { on: v.on, notify: [v.notify.trim()] };
    for (const key of ["name", "project", "queue", "metric"]) if (v[key].trim()) body[key] = v[key].trim();
    for (const key of ["minutes", "above"]) if (v[key] !== "") body[key] = Number(v[key]);
    await TY.act(() => TY.post("/api/alerts/rules", body), "alert rule added");
  }

  TY.pages.services = function servicesPage(main) {
    const running = h("div", {}, h("p", { class: "empty" }, "loading…"));
    const rules = h("div", {});
    const sent = h("div", {});
    const scaler = h("div", {});
    main.replaceChildren(
      h("h1", {}, "Services"),
      h("div", { class: "panel" }, h("h2", {}, "Running"), running),
      h("div", { class: "panel" }, h("h2", {}, "Alert rules",
        h("button", { type: "button", class: "admin-only", id: "add-rule", onclick: () => addRule().then(refresh) }, "New rule")), rules),
      h("div", { class: "panel" }, h("h2", {}, "Recent alerts"), sent),
      h("div", { class: "panel" }, h("h2", {}, "Autoscaler"), scaler));

    async function load() {
      const [svc, ruleList, history, auto] = await Promise.all([
        TY.get("/api/services"), TY.get("/api/alerts/rules"), TY.get("/api/alerts/history?limit=50"), TY.get("/api/autoscaler?limit=50")]);
      running.replaceChildren(table("services-table", ["service", "name", "host", "state", "heartbeat"],
        svc.map((s) => h("tr", { dataset: { service: s.name } },
          h("td", {}, s.kind), h("td", {}, s.name), h("td", {}, `${s.host || ""} · pid ${s.pid || "?"}`),
          h("td", {}, s.kind === "autoscaler" ? (s.leading ? "acting" : "standing by") : `${s.sent || 0} sent`),
          h("td", {}, TY.ago(s.at)))),
        "no service runs (trainyard alerts service, trainyard autoscale service)"));
      rules.replaceChildren(table("rules-table", ["rule", "on", "filter", "notify", "rate", ""],
        ruleList.map((r) => h("tr", { dataset: { rule: r.id } },
          h("td", {}, h("strong", {}, r.name || r.id), h("div", { class: "muted mono" }, r.id)),
          h("td", {}, r.on, r.minutes ? ` ${r.minutes}m` : "", r.metric ? ` ${r.metric}` : "",
            r.above !== null ? ` > ${r.above}` : "", r.below !== null ? ` < ${r.below}` : ""),
          h("td", {}, ["project", "queue", "user"].filter((k) => r[k]).map((k) => `${k}=${r[k]}`).concat(r.tags.map((t) => `tag=${t}`)).join(" ") || "all"),
          h("td", { class: "mono" }, r.notify.map((u) => h("div", {}, u))),
          h("td", {}, `${r.burst} per ${r.window_s}s`),
          h("td", {}, h("button", { type: "button", class: "danger admin-only", dataset: { action: "remove" },
            onclick: () => TY.act(() => TY.api("DELETE", `/api/alerts/rules/${encodeURIComponent(r.id)}`), "rule removed").then(refresh) }, "Remove")))),
        "no alert rules"));
      sent.replaceChildren(table("alerts-table", ["when", "rule", "message", "alerts", "result"],
        history.map((e) => h("tr", { dataset: { ok: String(!!e.ok) } },
          h("td", {}, TY.ago(e.at)), h("td", { class: "mono" }, e.rule || ""), h("td", {}, e.title || ""),
          h("td", {}, String(e.subjects ?? "")), h("td", {}, e.ok ? "sent" : `failed: ${e.error || ""}`))),
        "nothing sent yet"));
      if (!auto.configured) { scaler.replaceChildren(h("p", { class: "empty", id: "autoscaler-off" }, "not configured (trainyard autoscale configure FILE)")); return; }
      scaler.replaceChildren(
        h("p", { class: "muted" }, `idle timeout ${auto.idle_timeout_s}s · spin-up timeout ${auto.spin_up_timeout_s}s` +
          (auto.cost_cap_per_hour !== null ? ` · cost cap ${auto.cost_cap_per_hour}/h` : "") + ` · acting: ${auto.leader || "none"}`),
        table("scale-queues", ["queue", "waiting", "resource", "driver", "running / max", "price/h"],
          auto.queues.map((q) => h("tr", { dataset: { queue: q.queue, resource: q.resource } },
            h("td", {}, q.queue), h("td", {}, String(q.waiting)), h("td", {}, q.resource), h("td", {}, q.driver),
            h("td", {}, `${q.running} / ${q.max}`), h("td", {}, String(q.hourly_price)))), "no queues"),
        h("h3", {}, "Machines"),
        table("scale-instances", ["worker", "queue", "state", "started", "machine"],
          auto.instances.map((i) => h("tr", { dataset: { worker: i.worker } },
            h("td", {}, i.worker), h("td", {}, i.queue), h("td", {}, i.state), h("td", {}, TY.ago(i.started)), h("td", { class: "mono" }, i.cloud_id))),
          "no machines"),
        h("h3", {}, "Decisions"),
        table("scale-decisions", ["when", "queue", "decision", "reason"],
          auto.decisions.map((d) => h("tr", { dataset: { action: d.action } },
            h("td", {}, TY.ago(d.at)), h("td", {}, d.queue), h("td", {}, d.action), h("td", {}, d.reason))),
          "no decisions yet"));
    }
    const refresh = TY.throttle(() => load().catch((e) => TY.toast(e.message, "error")), 500);
    refresh();
    const timer = setInterval(refresh, 3000); // alerts and decisions are not on the event stream
    const off = TY.onChange(refresh);
    return () => { clearInterval(timer); off(); };
  };
})();
