"use strict";
document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = document.getElementById("login-error");
  out.textContent = "";
  const token = document.getElementById("token").value.trim();
  try {
    const res = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
      credentials: "same-origin",
    });
    if (res.ok) {
      window.location.assign("/" + window.location.hash);
      return;
    }
    const data = await res.json().catch(() => ({}));
    out.textContent = (data.error && data.error.message) || `login failed (${res.status})`;
  } catch (err) {
    out.textContent = `cannot reach the server: ${err}`;
  }
});
