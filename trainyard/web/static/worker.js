"use strict";
/* One worker (agent): its facts, GPUs now, and charts of CPU, memory and per-GPU utilisation and
   memory over the time the page is open (read from its heartbeats, every ~2 s). */
(function () {
  const h = TY.h;
  const COLORS = ["#2f6fde", "#e5532e", "#2e9e57", "#a64fc9", "#e59b12", "#1fa3a3", "#d64090", "#6b7385"];
  const KEEP = 900; // points per chart: 30 minutes at one heartbeat every 2 s

  function chart(box, title, names) {
    const el = h("div", { class: "chart", dataset: { title } }, h("h3", {}, title));
    box.appendChild(el);
    const width = Math.max(300, Math.min(440, (box.clientWidth - 60) / 3));
    return new uPlot({
      width, height: 200,
      scales: { x: { time: true }, y: { range: [0, 100] } },
      axes: [{}, { values: (u, ticks) => ticks.map((t) => `${t}%`) }],
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
    }, [[], ...names.map(() => [])], el);
  }

  TY.pages.worker = function workerPage(main, params, name) {
    const title = h("h1", {}, h("a", { href: "#/workers" }, "Workers"), " / ", name);
    const facts = h("div", {});
    const gpus = h("div", { id: "worker-gpus" });
    const charts = h("div", { class: "charts", id: "worker-charts" });
    main.replaceChildren(title,
      h("div", { class: "grid2" }, h("div", { class: "panel" }, h("h2", {}, "Machine"), facts), h("div", { class: "panel" }, h("h2", {}, "GPUs now"), gpus)),
      h("div", { class: "panel" }, h("h2", {}, "Over time"), charts));
    const series = { t: [], cpu: [], mem: [], util: {}, gmem: {} };
    let plots = null;
    let closed = false;

    const command = (what) => {
      const sure = what === "stop" ? window.confirm(`Stop ${name}? Its current task is ended and re-queued.`) : true;
      if (sure) TY.act(() => TY.post(`/api/workers/${encodeURIComponent(name)}/${what}`), `${what} sent to ${name}`).then(load);
    };

    function record(w) {
      const s = w.stats || {};
      series.t.push(w.heartbeat);
      series.cpu.push(s.cpu_percent ?? null);
      series.mem.push(s.memory ? s.memory.percent : null);
      const gs = Array.isArray(s.gpus) ? s.gpus : [];
      for (const g of gs) {
        const key = `GPU ${g.index}`;
        if (!series.util[key]) { series.util[key] = series.t.slice(0, -1).map(() => null); series.gmem[key] = series.util[key].slice(); }
        series.util[key].push(g.utilization_pct ?? null);
        series.gmem[key].push(g.memory_total_mb ? Math.round((1000 * g.memory_used_mb) / g.memory_total_mb) / 10 : null);
      }
      for (const key of Object.keys(series.util)) { // a GPU that stopped reporting gets a gap
        if (series.util[key].length < series.t.length) { series.util[key].push(null); series.gmem[key].push(null); }
      }
      if (series.t.length > KEEP) {
        series.t.shift(); series.cpu.shift(); series.mem.shift();
        for (const key of Object.keys(series.util)) { series.util[key].shift(); series.gmem[key].shift(); }
      }
    }

    function draw() {
      const names = Object.keys(series.util).sort();
      const shape = names.join(",");
      if (!plots || plots.shape !== shape) {
        if (plots) plots.list.forEach((p) => p.destroy());
        charts.replaceChildren();
        const list = [chart(charts, "CPU and memory", ["CPU %", "memory %"])];
        if (names.length) list.push(chart(charts, "GPU utilisation", names), chart(charts, "GPU memory", names));
        plots = { shape, list };
      }
      plots.list[0].setData([series.t, series.cpu, series.mem]);
      if (names.length) {
        plots.list[1].setData([series.t, ...names.map((n) => series.util[n])]);
        plots.list[2].setData([series.t, ...names.map((n) => series.gmem[n])]);
      }
    }

    async function load() {
      if (closed) return;
      let w;
      try { w = await TY.get(`/api/workers/${encodeURIComponent(name)}`); } catch (e) {
        if (e.status === 404) {
          title.replaceChildren(h("a", { href: "#/workers" }, "Workers"), " / ", name, " ", TY.badge("gone"));
          facts.replaceChildren(h("p", { class: "empty", id: "worker-gone" }, "this worker is no longer live (it stopped, or its heartbeats did)"));
        } else TY.toast(e.message, "error");
        return;
      }
      const s = w.stats || {};
      title.replaceChildren(h("a", { href: "#/workers" }, "Workers"), " / ", w.name, " ", h("span", { id: "worker-state" }, TY.badge(w.state)),
        h("div", { class: "actions admin-only" },
          h("button", { type: "button", dataset: { action: "drain" }, onclick: () => command("drain") }, "Drain"),
          h("button", { type: "button", class: "danger", dataset: { action: "stop" }, onclick: () => command("stop") }, "Stop")));
      facts.replaceChildren(TY.facts([
        ["host", w.host], ["pid", String(w.pid)], ["version", w.version], ["mode", w.mode], ["queues", `${w.queues.join(", ")} (${w.order})`],
        ["GPUs", w.gpus.length ? w.gpus.join(", ") : "none"], ["started", TY.time(w.started)], ["heartbeat", `${w.heartbeat_age_s}s ago`],
        ["current", w.current.length ? w.current.map((id) => h("div", {}, TY.taskLink(id))) : "idle"],
        ["asked to", w.command], ["CPU", s.cpu_percent === undefined ? null : `${s.cpu_percent ?? "?"}%`],
        ["load", s.load_avg ? s.load_avg.join(" / ") : null],
        ["memory", s.memory ? `${s.memory.used_mb} / ${s.memory.total_mb} MB (${s.memory.percent}%)` : null],
        ["disk", s.disk ? `${s.disk.used_mb} / ${s.disk.total_mb} MB (${s.disk.percent}%)` : null],
        ["network", s.net ? `↑ ${TY.bytes(s.net.sent_bytes_per_s)}/s ↓ ${TY.bytes(s.net.recv_bytes_per_s)}/s` : null],
      ]));
      gpus.replaceChildren(TY.gpuCell(s), ...(Array.isArray(s.gpus) ? s.gpus.map((g) => h("div", { class: "muted" },
        `#${g.index} ${g.name || ""}${g.temperature_c !== undefined && g.temperature_c !== null ? ` · ${g.temperature_c}°C` : ""}${g.processes ? ` · ${g.processes} process(es)` : ""}`)) : []));
      if (!series.t.length || w.heartbeat !== series.t[series.t.length - 1]) { record(w); draw(); }
    }
    load();
    const timer = setInterval(load, 2000); // a worker reports with each heartbeat (~2 s)
    const off = TY.onChange((ev) => { if (ev.kind.startsWith("worker") && ev.worker === name) load(); });
    return () => { closed = true; clearInterval(timer); off(); if (plots) plots.list.forEach((p) => p.destroy()); };
  };
})();
