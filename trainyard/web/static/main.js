"use strict";
/* Start-up: who is logged in, the hash router, the header's live counts. */
(function () {
  const h = TY.h;
  const main = document.getElementById("main");
  const ROUTES = [
    [/^\/tasks\/([0-9a-zA-Z_-]+)$/, "task", "tasks"],
    [/^\/tasks$/, "tasks", "tasks"],
    [/^\/queues\/([^/]+)$/, "queue", "queues"],
    [/^\/queues$/, "queues", "queues"],
    [/^\/workers\/([^/]+)$/, "worker", "workers"],
    [/^\/workers$/, "workers", "workers"],
    [/^\/runs\/([0-9a-zA-Z_-]+)$/, "run", "pipelines"],
    [/^\/pipelines$/, "pipelines", "pipelines"],
    [/^\/editor$/, "editor", "editor"],
    [/^\/studies\/([0-9a-zA-Z_-]+)$/, "study", "studies"],
    [/^\/studies$/, "studies", "studies"],
    [/^\/compare$/, "compare", "tasks"],
    [/^\/services$/, "services", "services"],
  ];
  let cleanup = null;

  function route() {
    const raw = window.location.hash.replace(/^#/, "") || "/tasks";
    const [path, query] = raw.split("?");
    const params = new URLSearchParams(query || "");
    if (cleanup) { try { cleanup(); } catch (e) { /* a page that failed to start */ } }
    cleanup = null;
    for (const [pattern, page, nav] of ROUTES) {
      const m = path.match(pattern);
      if (!m) continue;
      document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
      const arg = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
      cleanup = TY.pages[page](main, params, arg) || null;
      return;
    }
    main.replaceChildren(h("h1", {}, "not found"), h("p", {}, h("a", { href: "#/tasks" }, "back to tasks")));
  }

  async function counts() {
    const o = await TY.get("/api/overview");
    const c = document.getElementById("counts");
    c.replaceChildren(
      h("span", { title: "queued tasks" }, `${o.tasks.queued} queued`),
      h("span", { title: "running tasks" }, `${o.tasks.running} running`),
      h("span", { title: "live workers" }, `${o.workers} workers`),
      h("span", { title: "all tasks" }, `${o.tasks_total} tasks`));
  }

  async function start() {
    TY.me = await TY.get("/api/me");
    document.getElementById("who").textContent = `${TY.me.user} (${TY.me.role})`;
    document.body.classList.toggle("readonly", TY.me.role !== "admin");
    document.getElementById("logout").addEventListener("click", async () => {
      await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
      window.location.assign("/login");
    });
    TY.startLive();
    const refreshCounts = TY.throttle(() => counts().catch(() => {}), 1000);
    TY.onChange(refreshCounts);
    setInterval(refreshCounts, 10000); // worker entries expire without an event
    refreshCounts();
    window.addEventListener("hashchange", route);
    route();
  }
  start().catch((e) => { if (e.status !== 401) main.replaceChildren(h("p", { class: "errors" }, e.message)); });
})();
