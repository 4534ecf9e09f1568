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

// Log pages: follow the file (the page itself is a refreshable tail without JavaScript).
const FOLLOW_MS = 2000;
const MAX_SHOWN = 512 * 1024;

async function follow(pre) {
  let offset = Number(pre.dataset.offset) || 0;
  const state = document.querySelector(".follow-state");
  if (state) state.hidden = false;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, FOLLOW_MS));
    let data;
    try {
      const response = await fetch(`${pre.dataset.follow}?after=${offset}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) continue;
      data = await response.json();
    } catch (_) {
      continue;
    }
    if (data.offset < offset) pre.textContent = ""; // rotated or emptied: start again
    offset = data.offset;
    if (data.text) {
      const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 4;
      if (pre.textContent === "(empty)") pre.textContent = "";
      pre.textContent = (pre.textContent + data.text).slice(-MAX_SHOWN);
      if (atBottom) window.scrollTo(0, document.body.scrollHeight);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const pre of document.querySelectorAll("pre[data-follow]")) follow(pre);
});
