"use strict";
/* Core of the trainyard web app: DOM helper, API calls, formatting, live events, modal, toast.
   Every value from the server goes into the page as text (never as HTML). */
const TY = (window.TY = { pages: {}, me: null });

TY.h = function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") {
      el.value = value;
      if (tag === "input") el.setAttribute("value", value); // the default, so selectors can find it
    }
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  const add = (child) => {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) child.forEach(add);
    else el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  };
  children.forEach(add);
  return el;
};
const h = TY.h;

TY.ApiError = class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `request failed (${status})`);
    this.status = status;
    this.details = err.details || [];
  }
};

TY.api = async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    window.location.assign("/login" + window.location.hash);
    throw new TY.ApiError(401, { error: { message: "logged out" } });
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new TY.ApiError(res.status, data);
  return data;
};
TY.get = (path) => TY.api("GET", path);
TY.post = (path, body) => TY.api("POST", path, body === undefined ? {} : body);

TY.qs = function qs(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  }
  return parts.length ? "?" + parts.join("&") : "";
};

/* -- formatting ------------------------------------------------------------------------- */
TY.time = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "");
TY.ago = function ago(ts) {
  if (!ts) return "";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)}h ago`;
  return new Date(ts * 1000).toLocaleDateString();
};
TY.duration = function duration(start, end) {
  if (!start) return "";
  const s = (end || Date.now() / 1000) - start;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
};
TY.bytes = function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};
TY.badge = (status) => h("span", { class: `badge s-${status}`, dataset: { status } }, status);
TY.taskLink = (id, label) => h("a", { href: `#/tasks/${id}` }, label || id);
TY.json = (value) => h("pre", { class: "json" }, JSON.stringify(value, null, 2));
TY.facts = (pairs) =>
  h("dl", { class: "facts" }, pairs.filter((p) => p[1] !== null && p[1] !== undefined && p[1] !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));

/* -- feedback ---------------------------------------------------------------------------- */
TY.toast = function toast(message, kind) {
  const el = h("div", { class: `toast ${kind || ""}`, role: "status" }, message);
  document.body.appendChild(el);
  setTimeout(() => el.remove(), kind === "error" ? 6000 : 2500);
};
/* Run an API action; errors become a red toast with the server's message. */
TY.act = async function act(fn, done) {
  try {
    const result = await fn();
    if (done) TY.toast(done);
    return result;
  } catch (err) {
    TY.toast(err.message, "error");
    return undefined;
  }
};

/* A small form in a modal; resolves with the field values, or null when cancelled. */
TY.modal = function modal(title, fields, okLabel) {
  return new Promise((resolve) => {
    const inputs = {};
    const body = fields.map((f) => {
      let input;
      if (f.options) input = h("select", { name: f.name }, f.options.map((o) => h("option", { value: o, selected: o === f.value }, o)));
      else input = h("input", { name: f.name, value: f.value ?? "", type: f.type || "text", placeholder: f.placeholder || "" });
      inputs[f.name] = input;
      return [h("label", {}, f.label), input];
    });
    const close = (value) => { back.remove(); resolve(value); };
    const submit = (ev) => {
      ev.preventDefault();
      const out = {};
      for (const [k, el] of Object.entries(inputs)) out[k] = el.value;
      close(out);
    };
    const back = h("div", { class: "modal-back" },
      h("form", { class: "modal", onsubmit: submit },
        h("h2", {}, title), body,
        h("div", { class: "buttons" },
          h("button", { type: "button", onclick: () => close(null) }, "Cancel"),
          h("button", { type: "submit", class: "primary" }, okLabel || "OK"))));
    document.body.appendChild(back);
    const first = Object.values(inputs)[0];
    if (first) first.focus();
  });
};

/* Previous / next for any paginated list answer ({offset, limit, total, next_offset}). */
TY.pager = function pager(page, go) {
  const from = page.items.length ? page.offset + 1 : 0;
  const to = page.offset + page.items.length;
  const total = page.total === null || page.total === undefined ? "" : ` of ${page.total}`;
  return h("div", { class: "pager" },
    h("button", { type: "button", disabled: page.offset === 0, onclick: () => go(Math.max(0, page.offset - page.limit)) }, "‹ Previous"),
    h("span", { class: "page-range" }, `${from}–${to}${total}`),
    h("button", { type: "button", disabled: page.next_offset === null, onclick: () => go(page.next_offset) }, "Next ›"));
};

TY.debounce = function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
};
/* At most one call per `ms`, the last one always made (for floods of live events). */
TY.throttle = function throttle(fn, ms) {
  let last = 0, timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) { last = Date.now(); fn(); return; }
    if (!timer) timer = setTimeout(() => { timer = null; last = Date.now(); fn(); }, wait);
  };
};

/* -- live events: one EventSource for the whole app ---------------------------------------- */
TY.listeners = new Set();
TY.onChange = function onChange(fn) {
  TY.listeners.add(fn);
  return () => TY.listeners.delete(fn);
};
TY.startLive = function startLive() {
  const dot = document.getElementById("live-dot");
  const source = new EventSource("/api/events");
  source.addEventListener("hello", () => dot.classList.add("on"));
  source.addEventListener("change", (ev) => {
    const event = JSON.parse(ev.data);
    for (const fn of [...TY.listeners]) fn(event);
  });
  source.addEventListener("resync", () => { for (const fn of [...TY.listeners]) fn({ kind: "resync" }); });
  source.onerror = () => dot.classList.remove("on");
  TY.events = source;
};
