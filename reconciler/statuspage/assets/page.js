// lanai's status page: fetches status.json every 10 s and draws it.
//
// Names in the snapshot (services, models, commit subjects, errors) come from a git push
// and are untrusted: everything is drawn as DOM nodes and textContent, never parsed as
// markup. Bar widths go through element.style (CSSOM), which the page's CSP allows.
"use strict";

const REFRESH_MS = 10000;
const SNAPSHOT_VERSION = 1;
const SIGNED_OUT = "Signed out of Open WebUI, or not an admin: sign in as the admin and reload.";
const NO_DAEMON = "lanai's daemon did not answer; this page asks again every 10 s.";

const TONE = {
  Synced: "good", Healthy: "good", ready: "good", fits: "good", applied: "good",
  "no-op": "good", healed: "good", ok: "good",
  OutOfSync: "warn", Progressing: "warn", Suspended: "warn", pulling: "warn",
  missing: "warn", drift: "warn", waiting: "warn", "spills (allowed)": "warn", cpu: "warn",
  Failed: "bad", Degraded: "bad", Missing: "bad", failed: "bad", spills: "bad",
  "source-error": "bad",
};

// -- small helpers ------------------------------------------------------------------------

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A word with its colour: the word says it, the colour only repeats it.
function pill(word, label) {
  const tone = TONE[word] || "unknown";
  const node = el("span", "pill tone-" + tone, label ? label + ": " : "", String(word || "?"));
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return (i === 0 ? String(value) : value.toFixed(value < 10 ? 1 : 0)) + " " + units[i];
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " days";
}

// How long ago `stamp` was, on the daemon's clock (`now` in the snapshot), so that a
// phone whose clock is off still reads the right ages.
function ago(stamp, data) {
  if (!stamp) return "never";
  const then = Date.parse(stamp);
  const now = Date.parse(data.now);
  if (Number.isNaN(then) || Number.isNaN(now)) return String(stamp);
  return duration((now - then) / 1000) + " ago";
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function body(id) {
  const section = document.getElementById(id);
  return clear(section.querySelector(".body"));
}

function line(label, ...values) {
  return el("p", "line", el("span", "label", label), " ", ...values);
}

function list(className) {
  return el("ul", "rows " + (className || ""));
}

function percent(part, whole) {
  if (!whole || part === null || part === undefined) return 0;
  return Math.max(0, Math.min(100, (100 * part) / whole));
}

// A bar: a track with one segment per [value, class] (CSSOM widths, no markup).
function bar(scale, segments, marker, caption) {
  const track = el("div", "bar");
  for (const [value, className] of segments) {
    const fill = el("div", "fill " + className);
    fill.style.width = percent(value, scale).toFixed(2) + "%";
    track.appendChild(fill);
  }
  if (marker !== null && marker !== undefined && marker < scale) {
    const tick = el("div", "marker");
    tick.style.left = percent(marker, scale).toFixed(2) + "%";
    track.appendChild(tick);
  }
  return el("div", "meter", track, el("p", "caption", caption));
}

// -- sections -------------------------------------------------------------------------------

function renderOverall(data) {
  const root = body("overall");
  const o = data.overall || {};
  if (!o.deployed) {
    root.appendChild(el("p", "lead", "Nothing deployed yet."));
    root.appendChild(el("p", "muted", "Push a commit to the state repo: this page fills in " +
      "after lanai's first reconcile."));
  } else {
    root.appendChild(el("p", "lead", pill(o.sync, "Sync"), " ", pill(o.health, "Health"),
      o.suspended ? " " : null, o.suspended ? pill("Suspended") : null));
  }
  if (o.applied) {
    root.appendChild(line("Applied", el("code", null, o.applied.short),
      o.applied.subject ? " " + o.applied.subject : "",
      el("span", "muted", " (" + ago(o.applied.at, data) + ")")));
  }
  if (o.head) {
    root.appendChild(line("Branch", (o.branch || "") + " is at ", el("code", null, o.head.short),
      " (not applied yet)"));
  } else if (o.branch) {
    root.appendChild(line("Branch", o.branch));
  }
  if (o.doing) root.appendChild(line("Doing", o.doing));
  if (o.suspended) {
    const why = o.suspended.reason ? ": " + o.suspended.reason : "";
    root.appendChild(line("Suspended", "since " + ago(o.suspended.since, data) + why +
      " (lanai changes nothing until `lanai resume`)"));
  }
  if (o.docker === false) root.appendChild(el("p", "error", "Docker did not answer."));
  if (o.last_error) root.appendChild(line("Last error", el("span", "error", o.last_error)));
  if (o.source_error) root.appendChild(line("Git", el("span", "error", o.source_error)));
  for (const [part, problem] of Object.entries(o.problems || {})) {
    root.appendChild(line("Problem", el("span", "error", part + ": " + problem)));
  }
  const took = o.last_check_ms !== null && o.last_check_ms !== undefined
    ? ", took " + Math.round(o.last_check_ms) + " ms" : "";
  root.appendChild(line("Last check", ago(o.last_check, data) + took));
  const gpus = (data.gpus && data.gpus.items) || [];
  for (const gpu of gpus) {
    if (gpu.memory_total) {
      const extra = [gpu.utilization !== null ? gpu.utilization + "% busy" : null,
        gpu.temperature !== null ? gpu.temperature + " °C" : null].filter(Boolean).join(", ");
      root.appendChild(el("div", "gpu", el("p", "line", el("span", "label", "GPU " + gpu.index),
        " " + gpu.name),
      bar(gpu.memory_total, [[gpu.memory_used, "used"]], null,
        bytes(gpu.memory_used) + " of " + bytes(gpu.memory_total) + " used" +
        (extra ? " · " + extra : ""))));
    } else {
      root.appendChild(line("GPU " + gpu.index, gpu.name + ": memory not reported"));
    }
  }
  if (data.gpus && data.gpus.error) {
    root.appendChild(line("GPU", el("span", "error", data.gpus.error)));
  }
}

function renderServices(data) {
  const root = body("services");
  const services = data.services || [];
  if (!services.length) {
    root.appendChild(el("p", "muted", "No services deployed yet."));
    return;
  }
  const rows = list();
  for (const s of services) {
    const notes = [];
    if (s.detail) notes.push(s.detail);
    if (s.heals) notes.push("healed " + s.heals + "× in the last " + duration(s.heal_window_s));
    if (s.held) notes.push("heal limit reached: left alone for now");
    rows.appendChild(el("li", "row",
      el("p", "name", s.name),
      el("p", "pills", pill(s.sync, "Sync"), " ", pill(s.health, "Health")),
      el("p", "muted small", s.image || ""),
      notes.length ? el("p", "small", notes.join("; ")) : null));
  }
  root.appendChild(rows);
}

function renderDrift(data) {
  const root = body("drift");
  const drift = data.drift || {};
  const items = drift.items || [];
  if (!items.length) {
    root.appendChild(el("p", null, pill("Synced", "Drift"), " nothing differs from git",
      el("span", "muted", " (checked " + ago(drift.checked, data) + ")")));
    return;
  }
  const kinds = Object.entries(drift.kinds || {}).map(([k, n]) => n + " " + k).join(", ");
  root.appendChild(el("p", null, pill("OutOfSync", "Drift"), " " + items.length +
    " difference(s) from git: " + kinds, el("span", "muted", " (checked " +
    ago(drift.checked, data) + ")")));
  const rows = list();
  for (const item of items) {
    rows.appendChild(el("li", "row",
      el("p", "name", String(item.service || "?") + " ", el("span", "kind", item.kind)),
      item.detail ? el("p", "small", item.detail) : null,
      item.since ? el("p", "muted small", "since " + ago(item.since, data)) : null));
  }
  root.appendChild(rows);
}

function renderHistory(data) {
  const root = body("history");
  const entries = data.history || [];
  if (!entries.length) {
    root.appendChild(el("p", "muted", "No reconciles recorded yet."));
    return;
  }
  const rows = list();
  for (const h of entries) {
    const result = h.failed ? "failed" : h.result;
    rows.appendChild(el("li", "row",
      el("p", "name", pill(result), " ", h.short ? el("code", null, h.short) : null,
        el("span", "muted", " " + ago(h.at, data) + (h.trigger ? ", " + h.trigger : ""))),
      h.summary ? el("p", "small", h.summary) : null,
      h.error ? el("p", "small error", h.error)
        : (h.subject ? el("p", "small muted", h.subject) : null)));
  }
  root.appendChild(rows);
}

function modelBars(m, budget) {
  const scale = Math.max(budget || 0, m.estimate || 0, m.size || 0);
  const parts = [];
  if (!scale) return parts;
  const over = budget && m.estimate && m.estimate > budget;
  if (m.estimate) {
    parts.push(bar(scale, [[m.estimate, over ? "over" : "planned"]], budget,
      "planned " + bytes(m.estimate) + (budget ? " of the " + bytes(budget) + " budget" : "") +
      (over ? " (over: part runs on the CPU)" : "")));
  }
  if (m.size) {
    const vram = m.size_vram || 0;
    parts.push(bar(scale, [[vram, "gpu"], [m.size - vram, "cpu"]], budget,
      (m.live ? "loaded " : "loaded at the last check ") + bytes(m.size) + ": " +
      (m.processor || "")));
  }
  return parts;
}

function renderModels(data) {
  const root = body("models");
  const models = data.models || {};
  if (!models.declared) {
    root.appendChild(el("p", "muted", "No models.yaml in the applied commit."));
    return;
  }
  const budget = models.budget;
  root.appendChild(el("p", null, pill(models.sync, "Models"),
    budget ? " VRAM budget " + bytes(budget) : " no GPU budget: models run on the CPU",
    models.ollama ? null : el("span", "muted", " · Ollama did not answer")));
  if (models.pull) {
    const p = models.pull;
    root.appendChild(bar(p.total || 0, [[p.completed || 0, "planned"]], null,
      "pulling " + p.model + ": " + bytes(p.completed) + " of " + bytes(p.total) +
      (p.percent !== null && p.percent !== undefined ? " (" + p.percent + "%)" : "")));
  }
  const rows = list("models");
  for (const m of models.items || []) {
    const facts = [m.context ? "context " + m.context : null,
      m.loaded ? "loaded" : (m.loaded === false ? "not loaded" : null)].filter(Boolean);
    rows.appendChild(el("li", "row",
      el("p", "name", m.name, m.default ? el("span", "muted", " (default)") : null),
      el("p", "pills", pill(m.state), " ", pill(m.verdict, "Fit"),
        facts.length ? el("span", "muted", " " + facts.join(", ")) : null),
      ...modelBars(m, budget),
      m.note ? el("p", "small muted", m.note) : null));
  }
  root.appendChild(rows);
}

let chartShown = null;

function renderBench(data) {
  const root = body("bench");
  const bench = data.bench || {};
  const img = document.getElementById("bench-chart");
  if (!bench.runs) {
    root.appendChild(el("p", "muted", "No bench runs yet: `lanai bench` on the server " +
      "measures each model and keeps the result."));
    img.hidden = true;
    return;
  }
  root.appendChild(el("p", null, bench.runs + " run(s), the latest " +
    ago(bench.latest, data) + "; generated tokens/s of the newest runs:"));
  if (chartShown !== bench.chart) { // a new run: fetch the chart again, else keep it
    img.src = bench.chart;
    chartShown = bench.chart;
  }
  img.hidden = false;
}

function renderBackups(data) {
  const root = body("backups");
  const backups = data.backups || {};
  const items = backups.items || [];
  if (!items.length) {
    root.appendChild(el("p", "muted", "No backups yet."));
    return;
  }
  root.appendChild(el("p", null, backups.count + " kept; newest first:"));
  const rows = list();
  for (const b of items) {
    rows.appendChild(el("li", "row",
      el("p", "name", el("code", null, b.id)),
      el("p", "small", b.kind + ", " + bytes(b.size) + ", " +
        (b.age_s !== null && b.age_s !== undefined ? duration(b.age_s) + " ago" : b.created))));
  }
  root.appendChild(rows);
}

// Draws a whole snapshot; each section is drawn anew from it.
function render(data) {
  if (!data || data.version !== SNAPSHOT_VERSION) {
    throw new Error("this page does not know this status format; reload the page");
  }
  renderOverall(data);
  renderServices(data);
  renderDrift(data);
  renderModels(data);
  renderHistory(data);
  renderBench(data);
  renderBackups(data);
}

// -- fetching ------------------------------------------------------------------------------

const view = { updatedAt: null, failure: null, busy: false };

function showAlert(message) {
  const alert = document.getElementById("alert");
  alert.textContent = message || "";
  alert.hidden = !message;
  document.getElementById("page").className = message ? "stale" : "";
}

function showUpdated() {
  const text = view.updatedAt === null ? "Not updated yet"
    : "Updated " + duration((Date.now() - view.updatedAt) / 1000) + " ago";
  const stale = view.failure && view.updatedAt !== null;
  document.getElementById("updated").textContent = stale ? text + " (stale)" : text;
}

async function refresh() {
  if (view.busy) return; // a slow answer: the next tick asks again
  view.busy = true;
  try {
    await fetchAndRender();
  } finally {
    view.busy = false;
  }
}

async function fetchAndRender() {
  let response;
  try {
    response = await fetch("status.json", { cache: "no-store", credentials: "same-origin",
      redirect: "manual", headers: { Accept: "application/json" } });
  } catch (_err) {
    return fail(NO_DAEMON);
  }
  // The proxy's admin check answers 401/403, or sends a signed-out browser to sign in.
  if (response.status === 401 || response.status === 403 || response.type === "opaqueredirect") {
    return fail(SIGNED_OUT);
  }
  if (response.status === 502 || response.status === 503 || response.status === 504) {
    return fail(NO_DAEMON);
  }
  let data;
  try {
    data = await response.json();
  } catch (_err) {
    return fail("lanai's status answered HTTP " + response.status + " with something " +
      "that is not its status; reload the page.");
  }
  if (!response.ok) {
    return fail((data && data.error) || "lanai's status answered HTTP " + response.status + ".");
  }
  try {
    render(data);
  } catch (err) {
    return fail(String(err && err.message ? err.message : err));
  }
  view.updatedAt = Date.now();
  view.failure = null;
  showAlert(null);
  showUpdated();
}

function fail(message) {
  view.failure = message;
  showAlert(message);
  showUpdated();
}

function start() {
  document.getElementById("refresh").addEventListener("click", () => { refresh(); });
  refresh();
  setInterval(refresh, REFRESH_MS);
  setInterval(showUpdated, 1000);
  // A phone that wakes the tab gets fresh numbers at once, not up to 10 s later.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
}

if (typeof window !== "undefined" && typeof document !== "undefined") {
  document.addEventListener("DOMContentLoaded", start);
}
if (typeof module !== "undefined" && module.exports) {
  module.exports = { render, bytes, duration, ago, SIGNED_OUT, NO_DAEMON };
}
