// The Régua console: plain JavaScript over the service's JSON API (see console.rs for why no
// library). Every value from the service is put in the page as text, never as markup: plugin
// names, descriptions and errors come from untrusted plugins.
"use strict";

// Errors on the page are kept where a test (or a curious user) can read them.
window.consoleErrors = window.consoleErrors || [];
window.addEventListener("error", (e) => window.consoleErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.consoleErrors.push(String(e.reason)));

const $ = (selector, root = document) => root.querySelector(selector);

/** An element with attributes (`text`, `class`, `data-*`, …) and children (nodes or text). */
function el(tag, attrs = {}, ...children) {
  const svg = ["svg", "g", "rect", "text", "title"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Calls the API: `{ok, status, body}`, the body parsed when it is JSON. */
async function api(path, options = {}) {
  const response = await fetch(path, options);
  const text = await response.text();
  let body = text;
  try { body = JSON.parse(text); } catch (_) { /* not JSON: kept as text */ }
  return { ok: response.ok, status: response.status, body };
}

/** The message of an API error body, or the status. */
function errorOf(answer) {
  const e = answer.body && answer.body.error;
  return e ? `${e.message} (${e.code}, HTTP ${answer.status})` : `HTTP ${answer.status}`;
}

const json = (v) => JSON.stringify(v, null, 2);

// --- The pages ------------------------------------------------------------------------------

const pages = {};
let timer = null;

function route() {
  const [name, arg] = (location.hash.slice(1) || "plugins").split("/");
  const page = pages[name] ? name : "plugins";
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.dataset.page !== page;
  }
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clearInterval(timer);
  const { refresh, every, enter } = pages[page];
  if (enter) enter(arg ? decodeURIComponent(arg) : null);
  const tick = () => refresh().catch((e) => unreachable(e));
  tick();
  timer = setInterval(tick, every);
}

function unreachable(e) {
  const health = $("#health");
  health.textContent = `the service does not answer (${e.message || e})`;
  health.className = "bad";
}

async function refreshHealth() {
  try {
    const h = await api("/healthz");
    const log = h.body.decision_log;
    let text = `${h.body.plugins} plugins serving`;
    if (log) text += log.ok ? ` · decision log: ${log.written} written` : ` · decision log failing: ${log.error}`;
    else text += " · no decision log";
    $("#health").textContent = text;
    $("#health").className = h.body.status === "ok" ? "" : "bad";
  } catch (e) {
    unreachable(e);
  }
}

// --- Plugins ---------------------------------------------------------------------------------

/** The samples of an OpenMetrics text: `name -> [{labels, value}]`. */
function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || line.startsWith("#")) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    (out[m[1]] = out[m[1]] || []).push({ labels, value: Number(m[3]) });
  }
  return out;
}

function sumOf(metrics, name, match) {
  return (metrics[name] || [])
    .filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

function duration(seconds) {
  if (seconds < 1e-3) return `${(seconds * 1e6).toFixed(1)} µs`;
  if (seconds < 1) return `${(seconds * 1e3).toFixed(2)} ms`;
  return `${seconds.toFixed(2)} s`;
}

/** Short defaults inline; long ones folded, so one journey's steps do not fill the table. */
function params(defaults, open) {
  const text = JSON.stringify(defaults);
  if (text.length <= 60) return el("code", { text });
  return el("details", { open }, el("summary", { text: `${Object.keys(defaults).length} parameters` }), el("pre", { text: json(defaults) }));
}

function failureText(f) {
  return `${f.source}: ${f.error} (at ${f.at})`;
}

pages.plugins = {
  every: 1000,
  async refresh() {
    const [list, metricsText] = await Promise.all([
      api("/v1/plugins"),
      fetch("/metrics").then((r) => r.text()),
    ]);
    const metrics = parseMetrics(metricsText);
    const failures = $("#failures");
    failures.replaceChildren(...list.body.failures.map((f) => el("li", { "data-failure": f.source, text: `Did not load: ${failureText(f)}` })));
    // The rows are made again each second; parameters someone unfolded stay unfolded.
    const unfolded = new Set([...document.querySelectorAll("tr[data-plugin] details[open]")].map((d) => d.closest("tr").dataset.plugin));
    const rows = [];
    for (const p of list.body.plugins) {
      const ok = sumOf(metrics, "regua_evaluations_total", { plugin: p.name, outcome: "ok" });
      const failed = sumOf(metrics, "regua_evaluations_total", { plugin: p.name, outcome: "failed" });
      const customers = sumOf(metrics, "regua_plugin_customers_total", { plugin: p.name });
      const seconds = sumOf(metrics, "regua_plugin_seconds_total", { plugin: p.name });
      rows.push(el("tr", { "data-plugin": p.name },
        el("td", {}, el("strong", { text: p.name }), el("br"), el("small", { text: p.description })),
        el("td", { "data-label": "Kind" }, el("span", { class: "kind", text: p.kind })),
        el("td", { "data-label": "Version" }, el("code", { class: "version", text: p.version }), el("br"),
          el("small", { text: `crate ${p.crate_version}, ${p.code} code` })),
        el("td", { class: "num", "data-label": "ABI", text: p.abi }),
        el("td", { "data-label": "Reads", text: p.reads.join(", ") || "the id only" }),
        el("td", { class: "params", "data-label": "Parameters" }, params(p.params, unfolded.has(p.name))),
        el("td", { "data-label": "Loaded at", text: p.loaded_at }),
        el("td", { class: "num evaluations", "data-label": "Evaluations", "data-ok": ok, "data-failed": failed, text: failed ? `${ok} ok, ${failed} failed` : `${ok}` }),
        el("td", { class: "num latency", "data-label": "Latency", text: customers ? duration(seconds / customers) : "–" })));
      if (p.last_error) {
        rows.push(el("tr", { class: "error", "data-error-of": p.name },
          el("td", { colspan: 9, role: "alert",
            text: `The newest build of ${p.name} did not load; version ${p.version} keeps serving. ${failureText(p.last_error)}` })));
      }
    }
    $("#plugin-table tbody").replaceChildren(...rows);
    if (!rows.length) {
      $("#plugin-table tbody").append(el("tr", {}, el("td", { colspan: 9, text: "No plugin is serving: put .wasm files in the plugins folder." })));
    }
  },
};

// --- Try it ----------------------------------------------------------------------------------

/** ISO 8601 to the second, for records made relative to `now`. */
function ago(now, hours) {
  return new Date(now.getTime() - hours * 3600e3).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function granted(now) {
  const c = { marketing: { status: "granted", at: ago(now, 24 * 400) }, transactional: { status: "granted", at: ago(now, 24 * 400) } };
  return { email: c, sms: c, push: c, webpush: c, whatsapp: c };
}

const EXAMPLE_NOW = "2025-03-11T12:00:00Z";

/** Example customers: the bundled one at its own `now`, and some made relative to `now`. */
const examples = [
  { name: "Bruno, an RFM champion (examples/customer.json, at " + EXAMPLE_NOW + ")", bundled: true },
  { name: "New sign-up 2 h ago, first WhatsApp 1 h ago, app not installed", make: (now) => ({
    id: "try-new", tz: "America/Sao_Paulo",
    profile: { first_name: "Ana", created_at: ago(now, 2), business_units: ["benefits"], funnel_stage: "new" },
    consents: granted(now), transactions: [],
    events: [{ name: "account_created", at: ago(now, 2), props: null }],
    inbound: [],
    contacts: [{ channel: "whatsapp", at: ago(now, 1), campaign: "ACT-2025-001", category: "marketing", tags: ["bu:benefits"], counts_toward_caps: true }],
    journeys: [],
  }) },
  { name: "Lapsed: last purchase 45 days ago", make: (now) => ({
    id: "try-lapsed", tz: "America/Manaus",
    profile: { first_name: "Carla", created_at: ago(now, 24 * 500), business_units: ["card"] },
    consents: granted(now),
    transactions: [1, 2, 3].map((i) => ({ id: `try-lapsed-t${i}`, at: ago(now, 24 * (45 + 30 * i)), kind: "purchase", amount: 120 * i, currency: "BRL", business_unit: "card", category: "supermercado" })),
    events: [], inbound: [], contacts: [], journeys: [],
  }) },
  { name: "Birthday today, e-mail only", make: (now) => ({
    id: "try-birthday", tz: "America/Sao_Paulo",
    profile: { first_name: "Davi", birthday: `1990-${ago(now, 0).slice(5, 10)}`, created_at: ago(now, 24 * 900), business_units: ["card"] },
    consents: { email: { marketing: { status: "granted", at: ago(now, 24 * 900) } } },
    transactions: [], events: [], inbound: [], contacts: [], journeys: [],
  }) },
];

const DEFAULT_MESSAGE = { channel: "push", category: "marketing", campaign: "TRY-IT", tags: [] };
let targets = { plugins: [], campaigns: [] };
let targetsSignature = null;

function target() {
  const [type, name] = $("#try-target").value.split(/:(.*)/s);
  const plugin = targets.plugins.find((p) => p.name === name);
  return { type, name, plugin };
}

function showFields() {
  const { type, plugin } = target();
  const shown = {
    plugin: type === "plugin",
    rest: type === "plugin" && plugin && plugin.kind === "rest",
    event: type !== "plugin" || (plugin && plugin.kind === "journey"),
  };
  for (const node of document.querySelectorAll("#try-form [data-for]")) node.hidden = !shown[node.dataset.for];
  if (type === "plugin" && plugin) $("#try-params").value = json(plugin.params);
  if (shown.rest && !$("#try-message").value.trim()) $("#try-message").value = json(DEFAULT_MESSAGE);
}

async function pickExample() {
  const example = examples[Number($("#try-example").value)];
  if (!example) return;
  if (example.bundled) {
    const answer = await api("/console/example-customer.json");
    $("#try-customer").value = json(answer.body);
    $("#try-now").value = EXAMPLE_NOW;
  } else {
    const now = new Date($("#try-now").value);
    $("#try-customer").value = json(example.make(isNaN(now) ? new Date() : now));
  }
}

/** The JSON of a field, or an error naming it. */
function field(id, label, optional) {
  const text = $(id).value.trim();
  if (!text) {
    if (optional) return undefined;
    throw new Error(`${label} is empty`);
  }
  try { return JSON.parse(text); } catch (e) { throw new Error(`${label} is not JSON: ${e.message}`); }
}

function reasonsList(reasons) {
  return reasons && reasons.length ? el("ul", { class: "reasons" }, reasons.map((r) => el("li", { text: r }))) : null;
}

function decisionLink(id) {
  return id ? el("p", {}, "Decision ", el("a", { href: `#decisions/${encodeURIComponent(id)}`, text: id })) : null;
}

/** A plugin's answer in words. */
function pluginResult(a) {
  let outcome = "";
  let yes = true;
  // The API's own words: a segment's `match`, a rest policy's `decision`, a journey's `actions`.
  if ("error" in a) { outcome = `error: ${a.error}`; yes = false; }
  else if ("match" in a) { outcome = `match: ${a.match}`; yes = a.match === true; }
  else if ("decision" in a) { outcome = a.decision + (a.rule ? ` by ${a.rule}` : "") + (a.reason ? ` (${a.reason})` : "") + (a.until ? ` until ${a.until}` : ""); yes = a.decision === "allow"; }
  else if ("actions" in a) { outcome = a.actions.length ? `${a.actions.length} action(s)` : "nothing to do now"; yes = a.actions.length > 0; }
  else outcome = "answered";
  return el("div", { class: "result" },
    el("h3", {}, `${a.plugin} `, el("small", { class: "version", text: a.version })),
    el("p", { class: `outcome ${yes ? "yes" : "no"}`, text: outcome }),
    reasonsList(a.reasons),
    a.actions && a.actions.length ? el("pre", { text: json(a.actions) }) : null,
    decisionLink(a.decision_id));
}

/** One campaign's decision: the whole trail, then the messages or why not. */
function decisionResult(d) {
  const planned = d.outcome === "planned";
  return el("div", { class: "result decision", "data-campaign": d.campaign },
    el("h3", { text: d.campaign + (d.variant ? ` · variant ${d.variant}` : "") }),
    el("p", { class: `outcome ${planned ? "yes" : "no"}`, text: d.outcome.replaceAll("_", " ") }),
    el("ol", { class: "trail", "aria-label": "audience → holdout → variant → journey → rest → message" },
      d.reasons.map((r) => el("li", { text: r })),
      (d.messages || []).map((m) => el("li", { class: "message", text: `message: ${m.channel} ${m.template}, send at ${m.send_at}${m.deferred_by ? ` (deferred by ${m.deferred_by})` : ""}` })),
      (d.denied || []).map((x) => el("li", { class: "denied", text: `denied by ${x.rule}: ${x.reason} (${x.channel} ${x.template})` })),
      d.error ? el("li", { class: "error-text", text: d.error }) : null),
    decisionLink(d.decision_id));
}

async function runTry(event) {
  event.preventDefault();
  const out = $("#try-result");
  const { type, name, plugin } = target();
  let path;
  let request;
  try {
    request = { customer: field("#try-customer", "The customer"), now: $("#try-now").value.trim() };
    const ev = field("#try-event", "The event", true);
    if (type === "plugin") {
      path = `/v1/plugins/${encodeURIComponent(name)}/evaluate`;
      request.params = field("#try-params", "The parameters", true) || {};
      if (plugin && plugin.kind === "rest") request.message = field("#try-message", "The message");
      if (plugin && plugin.kind === "journey" && ev !== undefined) request.event = ev;
    } else {
      path = type === "campaign" ? `/v1/campaigns/${encodeURIComponent(name)}/decide` : "/v1/decide";
      if (ev !== undefined) request.event = ev;
    }
  } catch (e) {
    out.replaceChildren(el("p", { class: "error-text", role: "alert", text: e.message }));
    return;
  }
  const answer = await api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(request) });
  $("#try-answer").textContent = json(answer.body);
  if (!answer.ok) {
    out.replaceChildren(el("p", { class: "error-text", role: "alert", text: errorOf(answer) }));
    return;
  }
  const a = answer.body;
  out.replaceChildren(...(type === "plugin" ? [pluginResult(a)] : a.decisions.map(decisionResult)));
  if (type !== "plugin" && !a.decisions.length) out.append(el("p", { text: "No campaign is active at this instant." }));
}

pages.try = {
  every: 5000,
  enter() {
    if (!$("#try-now").value) $("#try-now").value = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  },
  async refresh() {
    const [plugins, campaigns] = await Promise.all([api("/v1/plugins"), api("/v1/campaigns")]);
    targets = { plugins: plugins.body.plugins, campaigns: campaigns.body.campaigns };
    // The list is rebuilt only when it changed, so a choice being made is not disturbed.
    const signature = JSON.stringify([targets.plugins.map((p) => [p.name, p.kind]), targets.campaigns.map((c) => [c.code, c.name])]);
    if (signature === targetsSignature) return;
    targetsSignature = signature;
    const select = $("#try-target");
    const before = select.value;
    const options = [
      el("optgroup", { label: "Plugins" }, targets.plugins.map((p) => el("option", { value: `plugin:${p.name}`, text: `${p.name} (${p.kind})` }))),
      el("optgroup", { label: "Campaigns" }, targets.campaigns.map((c) => el("option", { value: `campaign:${c.code}`, text: `${c.code} · ${c.name}` }))),
      el("optgroup", { label: "All" }, el("option", { value: "decide:", text: "Every active campaign" })),
    ];
    select.replaceChildren(...options);
    if ([...select.options].some((o) => o.value === before)) select.value = before;
    if (select.value !== before) showFields();
  },
};

// --- Campaigns -------------------------------------------------------------------------------

function refs(list) {
  return list.map((r) => r.plugin + (r.params && Object.keys(r.params).length ? ` ${JSON.stringify(r.params)}` : "")).join("; ");
}

function audience(a) {
  const parts = [];
  if (a.all_of.length) parts.push(`all of: ${refs(a.all_of)}`);
  if (a.any_of.length) parts.push(`any of: ${refs(a.any_of)}`);
  if (a.none_of.length) parts.push(`none of: ${refs(a.none_of)}`);
  return parts.join(" · ") || "everyone";
}

function facts(c) {
  const rows = [
    ["Requester", c.requester], ["Owner", c.owner], ["Priority", c.priority],
    ["Window", `${c.start} → ${c.end || "open"}`],
    ["Audience", audience(c.audience)],
    ["Holdout", c.holdout && c.holdout.percent ? `${c.holdout.percent}% (${c.holdout.scope})` : "none"],
    ["Variants", c.variants.length ? c.variants.map((v) => `${v.name} [${v.buckets[0]}, ${v.buckets[1]})${v.control ? " control" : ""}`).join(", ") : "none"],
    ["Sends", c.journey ? `journey ${c.journey.plugin}` : c.message ? `${c.message.channel} ${c.message.template}` : "–"],
    ["Rest policy", c.rest ? refs([c.rest]) : "the company's"],
    ["File", c.file],
  ];
  return el("dl", { class: "facts" }, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
}

/** The bars of a funnel: audience → holdout → denied/deferred by rule → sent by variant and channel. */
function funnelBars(f) {
  const bars = [["read", "customers read", f.read, "other"]];
  if (f.inactive) bars.push(["inactive", "outside the window", f.inactive, "other"]);
  bars.push(["not_in_audience", "not in the audience", f.not_in_audience, "other"]);
  bars.push(["in_audience", "in the audience", f.in_audience, "audience"]);
  bars.push(["held_out", "held out", f.held_out, "held"]);
  bars.push(["nothing_to_do", "nothing to do now", f.nothing_to_do, "other"]);
  bars.push(["denied", "every message denied", f.denied, "denied"]);
  for (const [rule, n] of Object.entries(f.denials)) bars.push([`denied:${rule}`, `messages denied: ${rule}`, n, "denied"]);
  for (const [rule, n] of Object.entries(f.defers)) bars.push([`deferred:${rule}`, `messages deferred: ${rule}`, n, "deferred"]);
  bars.push(["planned", "with a message planned", f.planned, "sent"]);
  if (f.errors) bars.push(["errors", "errors", f.errors, "denied"]);
  for (const [variant, channels] of Object.entries(f.sent)) {
    for (const [channel, n] of Object.entries(channels)) {
      bars.push([`sent:${variant}:${channel}`, `sent, ${variant === "-" ? "" : `variant ${variant}, `}${channel}`, n, "sent"]);
    }
  }
  return bars;
}

/** The funnel as a bar chart: on a wide screen labels left of the bars, on a phone above them. */
function funnelChart(f) {
  const bars = funnelBars(f);
  const narrow = window.matchMedia("(max-width: 640px)").matches;
  const width = narrow ? 360 : 820;
  const label = narrow ? 0 : 300;
  const row = narrow ? 36 : 24;
  const max = Math.max(1, ...bars.map((b) => b[2]));
  const scale = (width - label - 50) / max;
  return el("svg", { class: "funnel", "data-campaign": f.campaign, viewBox: `0 0 ${width} ${bars.length * row + 4}`, role: "img",
    "aria-label": `Funnel of ${f.campaign} in the latest run` },
    bars.map(([key, text, n, cls], i) => {
      const top = i * row + (narrow ? 16 : 4);
      return el("g", { class: "bar", "data-step": key, "data-count": n },
        el("title", { text: `${text}: ${n}` }),
        narrow ? el("text", { x: 0, y: i * row + 12, text })
          : el("text", { x: label - 8, y: top + 13, "text-anchor": "end", text }),
        el("rect", { class: cls, x: label, y: top, height: narrow ? 14 : row - 8, width: Math.max(n ? 2 : 0, n * scale) }),
        el("text", { class: "count", x: label + n * scale + 6, y: top + (narrow ? 12 : 13), text: n }));
    }));
}

function runStatus(run) {
  const r = run.report;
  const state = run.finished_at ? `finished ${run.finished_at}` : "running";
  return `Latest run (#${run.run}) for now = ${run.now}, started ${run.started_at}, ${state}: ` +
    `${r.lines} lines, ${r.customers} customers, ${r.messages} messages planned, ${r.bad_lines} lines with an error.`;
}

pages.campaigns = {
  every: 2000,
  async refresh() {
    const [list, latest] = await Promise.all([api("/v1/campaigns"), api("/v1/runs/latest")]);
    const run = latest.ok ? latest.body : null;
    $("#run-status").textContent = run ? runStatus(run)
      : "No campaign run since the service started. Each campaign's funnel is drawn here from the latest POST /v1/campaigns/run.";
    $("#campaign-errors").replaceChildren(...list.body.errors.map((e) => el("li", { text: `${e.file}${e.code ? ` (${e.code})` : ""}: ${e.error}` })));
    const funnels = new Map((run ? run.report.campaigns : []).map((f) => [f.campaign, f]));
    const cards = list.body.campaigns.map((c) => {
      const funnel = funnels.get(c.code);
      return el("article", { class: "campaign", "data-campaign": c.code },
        el("h3", {}, `${c.code} · ${c.name} `, el("span", { class: "kind", text: c.active ? "active" : "inactive" })),
        facts(c),
        funnel ? funnelChart(funnel) : el("p", { class: "note", text: run ? "Not in the latest run (added since)." : "No run yet." }));
    });
    $("#campaign-list").replaceChildren(...cards);
    if (!cards.length) $("#campaign-list").append(el("p", { text: "No campaign is served: start the service with --campaigns DIR." }));
  },
};

// --- Decisions -------------------------------------------------------------------------------

async function explain(id) {
  $("#decision-id").value = id;
  const answer = await api(`/v1/decisions/${encodeURIComponent(id)}`);
  $("#decision-answer").textContent = answer.ok ? answer.body.explanation : errorOf(answer);
  $("#decision-answer").className = answer.ok ? "" : "error-text";
}

pages.decisions = {
  every: 3000,
  enter(id) {
    if (id) explain(id).catch(unreachable);
  },
  async refresh() {
    const answer = await api("/v1/decisions?limit=20");
    const off = !answer.ok && answer.status === 404;
    $("#decisions-off").hidden = !off;
    $("#decision-form").hidden = off;
    $("#decision-table").hidden = off;
    if (off) {
      $("#decisions-off").textContent = "This service keeps no decision log, so there are no decisions to show. " +
        "Start it with regua serve --decision-log DIR: every answer is then recorded, and the latest are listed and explained here.";
      return;
    }
    if (!answer.ok) throw new Error(errorOf(answer));
    const rows = answer.body.decisions.map((d) => el("tr", { "data-decision": d.decision },
      el("td", { "data-label": "Made at", text: d.time }),
      el("td", { "data-label": "Customer", text: d.customer }),
      el("td", { "data-label": "Campaign or plugin", text: d.campaign || Object.keys(d.plugins).join(", ") }),
      el("td", { "data-label": "Outcome", text: d.outcome }),
      el("td", { "data-label": "Decision" }, el("button", { type: "button", class: "link", text: d.decision, "aria-label": `Explain decision ${d.decision}` }))));
    $("#decision-table tbody").replaceChildren(...rows);
    if (!rows.length) $("#decision-table tbody").append(el("tr", {}, el("td", { colspan: 5, text: "No decision yet." })));
  },
};

// --- Customers (the journey runtime) --------------------------------------------------------

let shownCustomer = null;

/** A customer's view as timeline rows `{at, order, what, campaign, detail}`, oldest first. */
function timelineOf(view) {
  const r = view.record || {};
  const rows = [];
  const add = (at, order, what, campaign, detail) => rows.push({ at, order, what, campaign: campaign || "", detail: detail || "" });
  for (const e of r.events || []) add(e.at, 0, `event ${e.name}`, "", e.props && Object.keys(e.props).length ? JSON.stringify(e.props) : "");
  for (const t of r.transactions || []) add(t.at, 0, `transaction ${t.kind}`, "", `${t.amount} ${t.currency || ""}`.trim());
  for (const i of r.inbound || []) add(i.at, 0, `inbound ${i.channel}`, "", "");
  for (const d of view.decisions || []) {
    const x = d.decision || {};
    const why = x.error || (x.reasons || []).join("; ");
    add(d.at, 1, `decision: ${x.outcome}`, x.campaign, `on ${d.input}${why ? ` · ${why}` : ""}`);
  }
  for (const m of view.outbox || []) {
    const step = m.journey ? ` (${m.journey} #${m.instance}, ${m.step})` : "";
    add(m.send_at, 2, `${m.channel} ${m.template}`, m.campaign, `${m.state}${step}${m.detail ? ` · ${m.detail}` : ""}`);
  }
  for (const t of view.timers || []) add(t.due, 3, "timer waiting", t.campaign, t.attempts ? `retry ${t.attempts}` : "");
  rows.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.order - b.order));
  return rows;
}

async function showCustomer(id) {
  const answer = await api(`/v1/customers/${encodeURIComponent(id)}`);
  const off = answer.status === 404 && answer.body && answer.body.error && /runtime is off/.test(answer.body.error.message);
  $("#customers-off").hidden = !off;
  if (off) $("#customers-off").textContent = "The journey runtime is off, so no customer is kept here. " +
    "Start the service with regua serve --campaigns DIR --state STATE: it then keeps customers, journeys, timers and an outbox.";
  if (!answer.ok) {
    $("#customer-summary").textContent = off ? "" : errorOf(answer);
    $("#customer-summary").className = "error-text";
    $("#timeline").hidden = true;
    return;
  }
  const view = answer.body;
  const journeys = (view.journeys || []).map((j) => `${j.journey} #${j.instance} ${j.status} at ${j.step}`);
  $("#customer-summary").className = "";
  $("#customer-summary").textContent = `${view.id}: clock ${view.clock || "no input yet"}; ` +
    (journeys.length ? `journeys: ${journeys.join(", ")}` : "in no journey");
  const rows = timelineOf(view).map((x) => el("tr", { "data-what": x.what.split(" ")[0].replace(":", "") },
    el("td", { "data-label": "When", text: x.at }),
    el("td", { "data-label": "What", text: x.what }),
    el("td", { "data-label": "Campaign", text: x.campaign }),
    el("td", { "data-label": "Detail", text: x.detail })));
  $("#timeline tbody").replaceChildren(...rows);
  $("#timeline").hidden = false;
}

pages.customers = {
  every: 3000,
  enter(id) {
    if (id) {
      shownCustomer = id;
      $("#customer-id").value = id;
    }
  },
  async refresh() {
    if (shownCustomer) await showCustomer(shownCustomer);
  },
};

// --- Start -----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#try-example").replaceChildren(...examples.map((x, i) => el("option", { value: i, text: x.name })));
  $("#try-example").addEventListener("change", () => pickExample().catch(unreachable));
  $("#try-target").addEventListener("change", showFields);
  $("#try-form").addEventListener("submit", (e) => runTry(e).catch(unreachable));
  $("#decision-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("#decision-id").value.trim();
    if (id) explain(id).catch(unreachable);
  });
  $("#decision-table").addEventListener("click", (e) => {
    const button = e.target.closest("button");
    if (button) explain(button.textContent).catch(unreachable);
  });
  $("#customer-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("#customer-id").value.trim();
    if (!id) return;
    const hash = `#customers/${encodeURIComponent(id)}`;
    if (location.hash === hash) showCustomer(id).catch(unreachable);
    else location.hash = hash;
  });
  window.addEventListener("hashchange", route);
  route();
  pickExample().catch(unreachable);
  refreshHealth();
  setInterval(refreshHealth, 2000);
});
