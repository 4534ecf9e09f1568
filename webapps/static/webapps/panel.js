// Progressive enhancement for the Web tab: Reload updates in place (the forms work without it).
"use strict";

function showOutcome(form, data) {
  const outcome = form.querySelector(".outcome");
  const log = form.querySelector(".log-tail");
  outcome.textContent = "";
  const span = document.createElement("span");
  span.className = data.misrouted ? "warn" : data.ok ? "ok" : "error";
  span.textContent = data.summary || data.detail || "Reload failed";
  outcome.appendChild(span);
  log.textContent = data.log_tail || "";
  log.hidden = data.ok || !data.log_tail;
}

async function reload(event) {
  const form = event.target;
  event.preventDefault();
  const button = form.querySelector("button");
  button.disabled = true;
  form.querySelector(".outcome").textContent = "Reloading…";
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    let data;
    try {
      data = await response.json();
    } catch (_) {
      data = { ok: false, detail: `Reload failed: HTTP ${response.status}` };
    }
    showOutcome(form, data);
  } catch (error) {
    showOutcome(form, { ok: false, detail: `Reload failed: ${error.message}` });
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-reload]")) {
    form.addEventListener("submit", reload);
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
