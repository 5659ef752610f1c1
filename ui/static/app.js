// warren's dashboard. It holds no data of its own: each page reads the JSON
// API (with the session's cookie, where the API asks for keys) and polls it
// to stay current. Everything a job carries (payloads, errors, metadata) is
// written into the page as text, never as markup: a job's submitter must
// not be able to run script in an operator's browser.

const POLL_MS = 2000;
const FAST_POLL_MS = 1000;
const MAX_BACKOFF_MS = 15000;
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const STATUSES = ["scheduled", "queued", "running", "retrying", "succeeded", "failed", "canceled"];
const PREVIEWABLE = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

// ---- DOM ----------------------------------------------------------------

// h builds an element: h("a", {href, class, onclick}, "text", child, ...).
// Strings become text nodes; null and false children are skipped.
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, props, ...children) {
  const el = document.createElementNS(SVG, tag);
  setProps(el, props);
  append(el, children);
  return el;
}

function setProps(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    // Through the CSSOM, which the page's Content-Security-Policy allows
    // where it refuses style attributes.
    else if (k === "style") el.style.cssText = v;
    else if (k in el && !(el instanceof SVGElement) && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// ---- Formatting -----------------------------------------------------------

const fmtNum = new Intl.NumberFormat();
function num(n) { return n === undefined || n === null ? "–" : fmtNum.format(n); }

function duration(seconds) {
  if (seconds === undefined || seconds === null) return "–";
  const s = Math.abs(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s < 10 && !Number.isInteger(s) ? s.toFixed(1) : Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

// goDuration reads Go's duration text ("1m30s", "250ms") into seconds.
function goDuration(text) {
  if (typeof text === "number") return text;
  if (!text) return 0;
  const units = { h: 3600, m: 60, s: 1, ms: 1e-3, "µs": 1e-6, us: 1e-6, ns: 1e-9 };
  let total = 0;
  for (const [, n, u] of String(text).matchAll(/([\d.]+)(h|ms|m|s|µs|us|ns)/g)) total += parseFloat(n) * units[u];
  return String(text).startsWith("-") ? -total : total;
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
function relative(date) {
  const secs = (date.getTime() - Date.now()) / 1000;
  const a = Math.abs(secs);
  if (a < 45) return secs < 0 ? "just now" : "in a moment";
  if (a < 3600) return rtf.format(Math.round(secs / 60), "minute");
  if (a < 86400) return rtf.format(Math.round(secs / 3600), "hour");
  return rtf.format(Math.round(secs / 86400), "day");
}

const absFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
// when shows a time relative ("3 min ago") and absolute, and keeps the
// machine-readable value in datetime.
function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "–");
  const d = new Date(iso);
  if (isNaN(d)) return h("span", { class: "muted" }, String(iso));
  const abs = absFmt.format(d);
  return h("time", { datetime: d.toISOString(), title: abs }, relative(d), h("span", { class: "abs" }, abs));
}

function shortID(id) { return id ? id.slice(0, 8) + "…" + id.slice(-4) : ""; }

function status(s) { return h("span", { class: `status ${s}` }, s); }

function progressBar(p, big) {
  const pct = Math.max(0, Math.min(100, (p && p.percent) || 0));
  return h("span", { class: big ? "progress big" : "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct,
      "aria-label": "progress" },
    h("span", { class: big ? "bar big" : "bar" }, h("span", { style: `width:${pct}%` })),
    h("span", { class: "num" }, `${pct}%`));
}

function pretty(value) {
  if (value === undefined) return "";
  try { return JSON.stringify(value, null, 2); } catch { return String(value); }
}

// ---- The API --------------------------------------------------------------

class APIError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "";
    this.field = e.field || "";
  }
}
class Unreachable extends Error {}

const session = { auth: "open", signed_in: true, scopes: ["submit", "read", "admin"], csrf: "" };
function can(scope) { return session.scopes.includes(scope) || session.scopes.includes("admin"); }

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session.csrf && method !== "GET") headers["X-Warren-CSRF"] = session.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new Unreachable(`cannot reach the API: ${err.message}`);
  }
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch { data = null; }
  }
  if (!res.ok) {
    if (res.status === 502 || res.status === 504) throw new Unreachable(`the API answered ${res.status}`);
    const err = new APIError(res.status, data);
    if (res.status === 401 && session.auth === "key" && path !== "/ui/login") {
      session.signed_in = false;
      navigate("/ui/login?next=" + encodeURIComponent(location.pathname + location.search), true);
    }
    throw err;
  }
  return data;
}

async function loadSession() {
  const s = await api("GET", "/ui/session");
  Object.assign(session, { key: "", csrf: "", types: undefined }, s);
  renderWho();
}

// ---- Live updates -----------------------------------------------------------

// The poller runs the current page's refresh now and then: every POLL_MS
// while the API answers, backing off to MAX_BACKOFF_MS while it does not,
// with a banner saying so; it sleeps while the tab is hidden.
const poller = {
  timer: 0, fn: null, interval: POLL_MS, failures: 0, generation: 0,
  start(fn, interval = POLL_MS) {
    this.stop();
    this.fn = fn; this.interval = interval; this.failures = 0;
    this.run(++this.generation);
  },
  stop() { clearTimeout(this.timer); this.fn = null; this.generation++; },
  async run(gen) {
    if (gen !== this.generation || !this.fn) return;
    if (document.hidden) { this.timer = setTimeout(() => this.run(gen), 500); return; }
    let wait = this.interval;
    try {
      const next = await this.fn();
      if (gen !== this.generation) return;
      if (typeof next === "number") wait = next;
      this.failures = 0;
      connection(true);
    } catch (err) {
      if (gen !== this.generation) return;
      if (err instanceof Unreachable || (err instanceof APIError && err.status === 503)) {
        this.failures++;
        wait = Math.min(MAX_BACKOFF_MS, this.interval * 2 ** this.failures);
        connection(false, err instanceof APIError ? err.message : "The API is not answering", wait);
      } else if (err instanceof APIError && err.status === 401) {
        return;
      } else {
        connection(true);
        showError(err);
      }
    }
    this.timer = setTimeout(() => this.run(gen), wait);
  },
  now() { if (this.fn) { clearTimeout(this.timer); this.run(++this.generation); } },
};

function connection(up, message, wait) {
  const banner = document.getElementById("banner");
  const dot = document.getElementById("live");
  if (up) {
    banner.hidden = true;
    if (dot) { dot.classList.remove("down"); dot.textContent = "live"; }
    return;
  }
  banner.hidden = false;
  banner.textContent = `${message}; trying again in ${Math.round(wait / 1000)} s. The figures shown are from before.`;
  if (dot) { dot.classList.add("down"); dot.textContent = "reconnecting"; }
}

// pageError is where the current page shows what went wrong.
function showError(err) {
  const box = document.getElementById("page-error");
  if (!box) return;
  box.hidden = !err;
  box.textContent = err ? err.message : "";
}

function errorBox() { return h("div", { class: "error-box", id: "page-error", role: "alert", hidden: true }); }

// swap replaces a region's content, keeping keyboard focus on the element
// with the same data-key, so that a refresh does not throw the user out.
function swap(region, ...children) {
  const active = document.activeElement;
  const key = active && region.contains(active) ? active.dataset.key : undefined;
  region.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  if (key) {
    const again = region.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

// ---- Routing ----------------------------------------------------------------

const pages = [];
function page(pattern, name, render) { pages.push({ pattern, name, render }); }

function navigate(to, replace) {
  if (replace) history.replaceState(null, "", to); else history.pushState(null, "", to);
  route();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[href]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui/") || url.pathname.startsWith("/ui/assets/") || a.target) return;
  if (url.hash && url.pathname === location.pathname) return; // the skip link: the browser moves focus
  e.preventDefault();
  navigate(url.pathname + url.search);
});
// A fragment (the skip link's #main) changes neither path nor query: the
// browser moves the focus, and the page stays as it is.
let routed = "";
window.addEventListener("popstate", () => {
  if (location.pathname + location.search !== routed) route();
});

async function route() {
  routed = location.pathname + location.search;
  poller.stop();
  const main = document.getElementById("main");
  // Signed out, the pages are out of reach: the navigation waits too.
  document.body.classList.toggle("signed-out", session.auth === "key" && !session.signed_in);
  const path = location.pathname.replace(/^\/ui\/?/, "");
  if (session.auth === "key" && !session.signed_in && path !== "login") {
    navigate("/ui/login?next=" + encodeURIComponent(location.pathname + location.search), true);
    return;
  }
  for (const p of pages) {
    const m = path.match(p.pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll("nav a[data-page]")) {
      if (a.dataset.page === p.name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    main.replaceChildren();
    document.title = "warren";
    try {
      await p.render(main, m.slice(1).map(decodeURIComponent), new URLSearchParams(location.search));
    } catch (err) {
      main.append(h("div", { class: "error-box", role: "alert" }, err.message));
    }
    return;
  }
  main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "/ui/" }, "Back to the overview")));
}

function renderWho() {
  const who = document.getElementById("who");
  swap(who,
    h("span", { id: "live", class: "live", role: "status" }, "live"),
    session.auth === "key" && session.signed_in ? [
      h("span", {}, "key ", h("strong", {}, session.key)),
      h("button", { type: "button", onclick: signOut }, "Sign out"),
    ] : null);
}

async function signOut() {
  try { await api("POST", "/ui/logout"); } catch { /* signed out either way */ }
  Object.assign(session, { signed_in: false, key: "", csrf: "", scopes: [] });
  renderWho();
  navigate("/ui/login", true);
}

// ---- Sign-in ------------------------------------------------------------------

page(/^login$/, "login", async (main, _, q) => {
  document.title = "Sign in · warren";
  const next = q.get("next") && q.get("next").startsWith("/ui/") && !q.get("next").startsWith("//") ? q.get("next") : "/ui/";
  if (session.signed_in) { navigate(next, true); return; }
  const input = h("input", { id: "key", name: "key", type: "password", autocomplete: "off", spellcheck: "false",
    required: true, placeholder: "wrn_…", "aria-describedby": "key-help" });
  const err = h("div", { class: "error-box", role: "alert", hidden: true });
  const button = h("button", { class: "primary", type: "submit" }, "Sign in");
  const form = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true; err.hidden = true;
    try {
      const s = await api("POST", "/ui/login", { key: input.value });
      Object.assign(session, s);
      renderWho();
      navigate(next, true);
    } catch (ex) {
      err.textContent = ex.message; err.hidden = false;
      input.focus(); input.select();
    } finally { button.disabled = false; }
  } },
    h("label", { for: "key" }, "API key", input),
    h("p", { id: "key-help", class: "note" },
      "A key with the read scope may look; one with admin may also cancel, retry, replay and purge. ",
      "The key is kept in a cookie that the page's scripts cannot read, for 12 hours or until you sign out."),
    err, button);
  main.append(h("section", { class: "signin card" }, h("h1", {}, "Sign in to warren"), form));
  input.focus();
});

// ---- Overview -------------------------------------------------------------------

page(/^$/, "overview", async (main) => {
  document.title = "Overview · warren";
  const region = h("div", { class: "pools", "aria-live": "off" });
  main.append(h("h1", {}, "Pools"), errorBox(), region);
  poller.start(async () => {
    const data = await api("GET", "/v1/queues");
    const queues = data.queues || [];
    if (!queues.length) {
      swap(region, h("p", { class: "empty" }, "No pools yet: no worker has declared a job type. Start one (warren dev, warren worker)."));
      return;
    }
    swap(region, queues.map(poolCard));
  });
});

function poolCard(q) {
  const r = q.replicas;
  const fig = (label, value, opts = {}) => h("div", {},
    h("dt", { title: opts.title || label }, label),
    h("dd", { class: opts.small ? "small" : "", "data-figure": opts.id || label }, opts.href ? h("a", { href: opts.href }, value) : value));
  const pauseButton = can("admin") ? h("button", { type: "button", "data-key": `pause-${q.pool}`,
    onclick: () => act(q.paused ? "resume" : "pause", `/v1/queues/${encodeURIComponent(q.pool)}/${q.paused ? "resume" : "pause"}`) },
    q.paused ? "Resume" : "Pause") : null;
  return h("article", { class: "pool", "data-pool": q.pool, "aria-label": `pool ${q.pool}` },
    h("header", {}, h("h2", {}, q.pool), q.paused ? h("span", { class: "badge", title: q.paused_by ? `paused by ${q.paused_by}` : "" }, "paused") : null,
      h("div", { class: "actions" }, pauseButton)),
    h("dl", { class: "figures" },
      fig("backlog", num(q.backlog), { id: "backlog", href: `/ui/jobs?pool=${encodeURIComponent(q.pool)}&status=queued` }),
      fig("running", num(q.running), { id: "running", href: `/ui/jobs?pool=${encodeURIComponent(q.pool)}&status=running` }),
      fig("scheduled", num(q.scheduled), { id: "scheduled", href: `/ui/jobs?pool=${encodeURIComponent(q.pool)}&status=scheduled` }),
      fig("retrying", num(q.retrying), { id: "retrying", href: `/ui/jobs?pool=${encodeURIComponent(q.pool)}&status=retrying` }),
      fig("rate-limited", num(q.limited || 0), { id: "limited", href: "/ui/limits", title: "jobs their types' rate limits hold back now: still queued, waiting in the delay levels for a token (warren limit list)" }),
      fig("dead", num(q.dead), { id: "dead", href: `/ui/dead?pool=${encodeURIComponent(q.pool)}` }),
      fig("consumers", num(q.consumers), { id: "consumers" }),
      fig("replicas", r ? (r.current === r.desired ? String(r.current) : `${r.current} → ${r.desired}`) : "–",
        { id: "replicas", small: true, title: r ? `${r.current} running, ${r.desired} wanted${r.reason ? ": " + r.reason : ""}` : "no autoscaler reports on this pool" }),
      fig("oldest", q.oldest_age_seconds ? duration(q.oldest_age_seconds) : "none", { id: "oldest", small: true, title: "how long the oldest waiting job has waited" }),
      fig("priority 5–9", num(q.high || 0), { id: "high", title: "the part of the backlog in the pool's high lane: jobs of priority 5 to 9, which its workers start first (docs/priorities.md)" })),
    outcomeChart(q));
}

// outcomeChart draws the last hour's succeeded and failed jobs a minute.
function outcomeChart(q) {
  const minutes = q.per_minute || [];
  const W = 600, H = 60, n = Math.max(minutes.length, 60), bw = W / n;
  const peak = Math.max(1, ...minutes.map((m) => m.succeeded + m.failed));
  const bars = minutes.map((m, i) => {
    const x = i * bw + bw * 0.1, w = bw * 0.8;
    const hs = (m.succeeded / peak) * H, hf = (m.failed / peak) * H;
    const t = new Date(m.minute);
    return svg("g", {},
      svg("title", {}, `${t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${m.succeeded} succeeded, ${m.failed} failed`),
      hs > 0 ? svg("rect", { class: "ok", x, y: H - hs, width: w, height: hs }) : null,
      hf > 0 ? svg("rect", { class: "bad", x, y: H - hs - hf, width: w, height: hf }) : null);
  });
  const label = `${q.pool}: ${num(q.succeeded_last_hour)} succeeded and ${num(q.failed_last_hour)} failed in the last hour`;
  return h("figure", { class: "chart", style: "margin:0.8rem 0 0" },
    svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": label }, bars),
    h("figcaption", {},
      h("span", {}, h("span", { class: "swatch ok" }), `${num(q.succeeded_last_hour)} succeeded `,
        h("span", { class: "swatch bad" }), `${num(q.failed_last_hour)} failed`),
      h("span", {}, "last hour, per minute")));
}

// act runs an action (a POST) and refreshes the page.
async function act(what, path, body, method = "POST") {
  try {
    const out = await api(method, path, body);
    showError(null);
    poller.now();
    return out;
  } catch (err) {
    if (err instanceof Unreachable) connection(false, err.message, POLL_MS);
    showError(new Error(`${what}: ${err.message}`));
    throw err;
  }
}

// ---- Jobs -------------------------------------------------------------------------

page(/^jobs$/, "jobs", async (main, _, q) => {
  document.title = "Jobs · warren";
  const typeSel = h("select", { name: "type", id: "f-type" }, h("option", { value: "" }, "any"));
  const poolSel = h("select", { name: "pool", id: "f-pool" }, h("option", { value: "" }, "any"));
  const statusSel = h("select", { name: "status", id: "f-status" }, h("option", { value: "" }, "any"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  const meta = h("input", { name: "meta", id: "f-meta", placeholder: "tenant=acme", size: 18,
    title: "metadata labels KEY=VALUE, several separated by spaces" });
  const since = h("select", { name: "since", id: "f-since" },
    [["", "any time"], ["15m", "last 15 minutes"], ["1h", "last hour"], ["24h", "last day"], ["168h", "last week"]]
      .map(([v, t]) => h("option", { value: v }, t)));
  try {
    const types = await api("GET", "/v1/types");
    const pools = new Set();
    for (const t of types.types || []) {
      typeSel.append(h("option", { value: t.name }, t.name));
      pools.add(t.pool);
    }
    for (const p of [...pools].sort()) poolSel.append(h("option", { value: p }, p));
  } catch { /* the filters still take what the URL says */ }
  for (const [sel, key] of [[typeSel, "type"], [poolSel, "pool"], [statusSel, "status"], [since, "since"]]) {
    const v = q.get(key) || "";
    if (v && ![...sel.options].some((o) => o.value === v)) sel.append(h("option", { value: v }, v));
    sel.value = v;
  }
  meta.value = [...q.entries()].filter(([k]) => k.startsWith("meta.")).map(([k, v]) => `${k.slice(5)}=${v}`).join(" ");

  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, el] of [["status", statusSel], ["type", typeSel], ["pool", poolSel], ["since", since]]) if (el.value) p.set(k, el.value);
    for (const pair of meta.value.split(/\s+/).filter(Boolean)) {
      const [k, ...rest] = pair.split("=");
      if (k) p.append(`meta.${k}`, rest.join("="));
    }
    navigate(`/ui/jobs${p.toString() ? "?" + p : ""}`);
  } },
    h("label", {}, "Status", statusSel), h("label", {}, "Type", typeSel), h("label", {}, "Pool", poolSel),
    h("label", {}, "Metadata", meta), h("label", {}, "Created", since),
    h("button", { class: "primary", type: "submit" }, "Filter"),
    h("a", { class: "button", href: "/ui/jobs" }, "Clear"));

  const region = h("div");
  const pager = h("div", { class: "pager" });
  main.append(h("h1", {}, "Jobs"), form, errorBox(), region, pager);

  // Cursors only go forward: the pages seen are kept to go back.
  const cursors = [""];
  let at = 0;
  const query = () => {
    const p = new URLSearchParams(q);
    p.set("limit", "50");
    if (cursors[at]) p.set("cursor", cursors[at]);
    return p;
  };
  const load = async () => {
    const data = await api("GET", `/v1/jobs?${query()}`);
    const js = data.jobs || [];
    swap(region, h("div", { class: "table-wrap" }, jobTable(js, true)));
    cursors[at + 1] = data.next_cursor || "";
    swap(pager,
      h("span", { class: "muted" }, `page ${at + 1}`),
      h("button", { type: "button", disabled: at === 0, "data-key": "newer", onclick: () => { at--; poller.start(load); } }, "← Newer"),
      h("button", { type: "button", disabled: !data.next_cursor, "data-key": "older", onclick: () => { at++; poller.start(load); } }, "Older →"));
  };
  poller.start(load);
});

function jobTable(js, full) {
  if (!js.length) return h("p", { class: "empty" }, "No jobs match.");
  return h("table", {},
    h("thead", {}, h("tr", {},
      h("th", {}, "Job"), h("th", {}, "Type"), h("th", {}, "Status"), h("th", {}, "Progress"),
      h("th", { class: "num wide" }, "Attempt"), full ? h("th", { class: "wide" }, "Metadata") : null,
      h("th", {}, "Created"), h("th", { class: "wide" }, "Finished"))),
    h("tbody", {}, js.map((j) => h("tr", { "data-job": j.id },
      h("td", { class: "mono" }, h("a", { href: `/ui/jobs/${j.id}`, "data-key": `job-${j.id}`, title: j.id }, shortID(j.id))),
      h("td", {}, j.type),
      h("td", {}, status(j.status)),
      h("td", {}, j.status === "running" || j.progress ? progressBar(j.progress) : h("span", { class: "muted" }, "–")),
      h("td", { class: "num wide" }, `${j.attempt}/${j.max_attempts}`),
      full ? h("td", { class: "wide" }, Object.entries(j.metadata || {}).map(([k, v]) => h("code", { style: "margin-right:.4rem" }, `${k}=${v}`))) : null,
      h("td", {}, when(j.created_at)),
      h("td", { class: "wide" }, when(j.finished_at))))));
}

// ---- Job detail -------------------------------------------------------------------

page(/^jobs\/([0-9a-fA-F-]{36})$/, "jobs", async (main, [id]) => {
  document.title = `Job ${shortID(id)} · warren`;
  const head = h("h1");
  const actions = h("div", { class: "actions job-actions" });
  const region = h("div");
  main.append(h("p", { class: "crumb" }, h("a", { href: "/ui/jobs" }, "← Jobs")), head, actions, errorBox(), region);
  let last = null;
  poller.start(async () => {
    const j = await api("GET", `/v1/jobs/${encodeURIComponent(id)}`);
    swap(head, "Job ", h("code", { class: "mono", style: "font-size:.85em" }, j.id), status(j.status));
    swap(actions, jobActions(j));
    // The preview's image is loaded once, when the artifact first appears.
    const artifactKey = j.artifact ? `${j.artifact.content_type}/${j.artifact.bytes}/${j.finished_at}` : "";
    const preview = last && last.artifactKey === artifactKey && last.preview ? last.preview : artifactCard(j);
    swap(region, jobDetail(j, preview));
    last = { artifactKey, preview };
    return TERMINAL.has(j.status) ? POLL_MS * 2 : FAST_POLL_MS;
  }, FAST_POLL_MS);
});

function jobActions(j) {
  if (!can("admin")) return [];
  const out = [];
  if (!TERMINAL.has(j.status)) {
    out.push(h("button", { type: "button", class: "danger", "data-key": "cancel", onclick: async (e) => {
      e.target.disabled = true;
      try { await act("cancel", `/v1/jobs/${j.id}/cancel`); } catch { e.target.disabled = false; }
    } }, "Cancel"));
  }
  if (j.status === "failed" || j.status === "canceled") {
    out.push(h("button", { type: "button", class: "primary", "data-key": "retry", onclick: async (e) => {
      e.target.disabled = true;
      try { await act("retry", `/v1/jobs/${j.id}/retry`); } catch { e.target.disabled = false; }
    } }, "Retry"));
  }
  return out;
}

// How long a job holds its unique key, by its mode (docs/unique.md).
const UNIQUE_WHILE = {
  queued: "held while it waits to start",
  running: "held while it waits or runs",
  until_done: "held until it ends",
  always: "held whatever becomes of it",
};

function jobDetail(j, preview) {
  const kv = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  const facts = h("section", { class: "card" }, h("h2", {}, "Job"),
    h("dl", { class: "kv" },
      kv("type", h("a", { href: `/ui/jobs?type=${encodeURIComponent(j.type)}` }, j.type)),
      kv("pool", j.pool || "–"),
      kv("attempt", `${j.attempt} of ${j.max_attempts}`),
      kv("priority", h("span", { "data-priority": "", title: "0 to 9: 5 and above run first in the pool (the high lane)" },
        `${j.priority || 0}${(j.priority || 0) >= 5 ? " (high lane)" : ""}`)),
      kv("timeout", j.timeout || "–"),
      j.worker ? kv("worker", h("code", {}, j.worker)) : null,
      j.submitted_by ? kv("submitted by", j.submitted_by) : null,
      j.idempotency_key ? kv("idempotency key", h("code", {}, j.idempotency_key)) : null,
      j.unique ? kv("unique key", [h("code", { "data-unique-key": "" }, j.unique.key),
        ` ${UNIQUE_WHILE[j.unique.while] || "held"}, at most ${j.unique.for} from its creation`]) : null,
      j.metadata ? kv("metadata", Object.entries(j.metadata).map(([k, v]) =>
        h("div", {}, h("a", { href: `/ui/jobs?${new URLSearchParams({ ["meta." + k]: v })}` }, h("code", {}, `${k}=${v}`))))) : null,
      kv("created", when(j.created_at)),
      j.scheduled_at ? kv("due", when(j.scheduled_at)) : null,
      j.limited_until ? kv("rate-limited until", h("span", { "data-limited-until": "", title: "its type's rate limit holds it back; no attempt is counted" }, when(j.limited_until))) : null,
      j.started_at ? kv("started", when(j.started_at)) : null,
      j.finished_at ? kv("finished", when(j.finished_at)) : null));
  const progress = h("section", { class: "card", "aria-label": "progress" }, h("h2", {}, "Progress"),
    j.progress || j.status === "running"
      ? [progressBar(j.progress, true), h("p", { class: "note", "data-progress-message": "" }, (j.progress && j.progress.message) || "\u00a0")]
      : h("p", { class: "muted" }, TERMINAL.has(j.status) ? "No progress was reported." : "Not started yet."));
  const outcome = h("section", { class: "card" }, h("h2", {}, "Outcome"),
    j.error ? h("div", { class: "error-box" }, h("strong", {}, j.error.code), ": ", j.error.message,
      j.error.stack ? h("details", {}, h("summary", {}, "stack"), h("pre", { class: "json" }, j.error.stack)) : null) : null,
    j.result !== undefined ? [h("h3", {}, "Result"), h("pre", { class: "json", "aria-label": "result" }, pretty(j.result))]
      : (!j.error ? h("p", { class: "muted" }, TERMINAL.has(j.status) ? "No result." : "Not finished yet.") : null));
  const payload = h("section", { class: "card" }, h("h2", {}, "Payload"), h("pre", { class: "json", "aria-label": "payload" }, pretty(j.payload)));
  return h("div", { class: "detail" }, facts, progress, outcome, preview, payload, attemptsCard(j));
}

function artifactCard(j) {
  if (!j.artifact) return null;
  const href = `/v1/jobs/${j.id}/artifact`;
  const type = j.artifact.content_type || "application/octet-stream";
  return h("section", { class: "card preview" }, h("h2", {}, "Artifact"),
    h("p", {}, `${type}, ${num(j.artifact.bytes)} bytes · `, h("a", { href, download: `${j.id}` }, "download")),
    PREVIEWABLE.has(type) ? h("img", { src: href, alt: `artifact of job ${j.id}` }) : null);
}

function attemptsCard(j) {
  const list = j.attempts || [];
  return h("section", { class: "card" }, h("h2", {}, "Attempts"),
    list.length ? h("ol", { class: "timeline" }, list.map((a) => {
      const took = a.started_at && a.ended_at ? (new Date(a.ended_at) - new Date(a.started_at)) / 1000 : null;
      if (a.attempt === 0) {
        return h("li", { class: a.outcome }, h("span", { class: "what" }, a.outcome === "replayed" ? "Replayed from the dead letters" : "Retried"), " ", when(a.ended_at));
      }
      return h("li", { class: a.outcome },
        h("div", {}, h("span", { class: "what" }, `Attempt ${a.attempt}`), " ", status(a.outcome)),
        h("div", { class: "muted" }, a.started_at ? ["started ", when(a.started_at)] : null, took !== null ? ` · took ${duration(took)}` : "",
          a.worker ? [" · on ", h("code", {}, a.worker)] : null),
        a.error ? h("div", {}, h("strong", {}, a.error.code), ": ", a.error.message) : null);
    })) : h("p", { class: "muted" }, "No attempt yet."));
}

// ---- Dead letters -------------------------------------------------------------------

page(/^dead$/, "dead", async (main, _, q) => {
  document.title = "Dead letters · warren";
  main.append(h("h1", {}, "Dead letters"));
  if (!can("admin")) {
    main.append(h("div", { class: "info-box" }, "Dead letters need a key with the admin scope. The overview counts them per pool."));
    return;
  }
  const queues = (await api("GET", "/v1/queues")).queues || [];
  const pool = q.get("pool") || (queues.find((x) => x.dead > 0) || queues[0] || {}).pool;
  if (!pool) { main.append(h("p", { class: "empty" }, "No pools yet.")); return; }
  const tabs = h("nav", { class: "actions", "aria-label": "Pools", style: "margin-bottom:1rem" },
    queues.map((x) => h("a", { class: "button", href: `/ui/dead?pool=${encodeURIComponent(x.pool)}`,
      "aria-current": x.pool === pool ? "page" : false, style: x.pool === pool ? "font-weight:700;border-color:var(--muted)" : "" },
      `${x.pool} (${num(x.dead)})`)));
  const selected = new Set();
  const toolbar = h("div", { class: "actions", style: "margin-bottom:.75rem" });
  const region = h("div");
  const dialog = h("dialog", { id: "confirm" });
  main.append(tabs, errorBox(), toolbar, region, dialog);

  let total = 0;
  const replay = async (body) => {
    const out = await act("replay", "/v1/dead/replay", { pool, ...body });
    selected.clear();
    const box = document.getElementById("page-error");
    box.hidden = false;
    box.className = "info-box";
    box.textContent = `Replayed ${out.replayed} job${out.replayed === 1 ? "" : "s"}` +
      (out.missing && out.missing.length ? `; not replayed (already replayed or gone): ${out.missing.join(", ")}` : ".");
  };
  const confirmPurge = () => {
    dialog.replaceChildren(h("form", { method: "dialog" },
      h("h2", { style: "margin-top:0" }, `Delete the dead letters of ${pool}?`),
      h("p", {}, `All ${num(total)} dead letters of pool ${pool} will be deleted. Their jobs stay failed and cannot be replayed from here any more. This cannot be undone.`),
      h("div", { class: "actions" },
        h("button", { value: "cancel", autofocus: true }, "Keep them"),
        h("button", { value: "purge", class: "danger solid", id: "confirm-purge" }, "Delete all"))));
    dialog.onclose = async () => {
      if (dialog.returnValue !== "purge") return;
      const out = await act("purge", `/v1/dead?pool=${encodeURIComponent(pool)}`, undefined, "DELETE");
      const box = document.getElementById("page-error");
      box.hidden = false; box.className = "info-box";
      box.textContent = `Deleted ${out.purged} dead letter${out.purged === 1 ? "" : "s"}.`;
    };
    dialog.showModal();
  };
  const load = async () => {
    const data = await api("GET", `/v1/dead?pool=${encodeURIComponent(pool)}&limit=500`);
    const dead = data.dead || [];
    total = data.total || 0;
    for (const id of [...selected]) if (!dead.some((d) => d.id === id)) selected.delete(id);
    swap(toolbar,
      h("button", { type: "button", class: "primary", "data-key": "replay-selected", disabled: selected.size === 0,
        onclick: () => replay({ ids: [...selected] }).catch(() => {}) }, `Replay selected (${selected.size})`),
      h("button", { type: "button", "data-key": "replay-all", disabled: total === 0, onclick: () => replay({ all: true }).catch(() => {}) },
        `Replay all (${num(total)})`),
      h("button", { type: "button", class: "danger", "data-key": "purge", disabled: total === 0, onclick: confirmPurge }, "Delete all…"),
      total > dead.length ? h("span", { class: "muted" }, `showing the oldest ${num(dead.length)} of ${num(total)}`) : null);
    if (!dead.length) { swap(region, h("p", { class: "empty" }, `Pool ${pool} has no dead letters.`)); return; }
    const all = h("input", { type: "checkbox", "aria-label": "select all", "data-key": "select-all",
      checked: dead.every((d) => selected.has(d.id)), onchange: (e) => {
        for (const d of dead) e.target.checked ? selected.add(d.id) : selected.delete(d.id);
        poller.now();
      } });
    swap(region, h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, all), h("th", {}, "Job"), h("th", {}, "Type"), h("th", {}, "Error"),
        h("th", { class: "num wide" }, "Attempts"), h("th", { class: "wide" }, "Reason"), h("th", {}, "Failed"))),
      h("tbody", {}, dead.map((d) => h("tr", { "data-dead": d.id },
        h("td", {}, h("input", { type: "checkbox", "aria-label": `select ${d.id}`, "data-key": `sel-${d.id}`, checked: selected.has(d.id),
          onchange: (e) => { e.target.checked ? selected.add(d.id) : selected.delete(d.id); poller.now(); } })),
        h("td", { class: "mono" }, h("a", { href: `/ui/jobs/${d.id}`, title: d.id }, shortID(d.id))),
        h("td", {}, d.type),
        h("td", { class: "wrap" }, d.error ? [h("strong", {}, d.error.code), ": ", d.error.message] : "–"),
        h("td", { class: "num wide" }, num(d.attempts)),
        h("td", { class: "wide" }, d.reason),
        h("td", {}, when(d.failed_at))))))));
  };
  poller.start(load);
});

// ---- Workers ----------------------------------------------------------------------------

page(/^workers$/, "workers", async (main) => {
  document.title = "Workers · warren";
  const region = h("div");
  main.append(h("h1", {}, "Workers"),
    h("p", { class: "note" }, "The worker processes alive now (each renews its lease every few seconds), and the jobs each is running."),
    errorBox(), region);
  poller.start(async () => {
    const [ws, running] = await Promise.all([api("GET", "/v1/workers"), api("GET", "/v1/jobs?status=running&limit=500")]);
    const byWorker = new Map();
    for (const j of running.jobs || []) {
      if (j.status !== "running") continue;
      if (!byWorker.has(j.worker)) byWorker.set(j.worker, []);
      byWorker.get(j.worker).push(j);
    }
    const workers = ws.workers || [];
    if (!workers.length) { swap(region, h("p", { class: "empty" }, "No worker process is alive.")); return; }
    swap(region, h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Worker"), h("th", {}, "Pool"), h("th", { class: "num" }, "Busy"),
        h("th", { class: "wrap" }, "Running now"), h("th", { class: "num wide" }, "Done"), h("th", { class: "num wide" }, "Failed"),
        h("th", { class: "wide" }, "Version"), h("th", { class: "wide" }, "Started"), h("th", {}, "Last seen"))),
      h("tbody", {}, workers.map((w) => {
        const jobsNow = (byWorker.get(w.id) || []).filter((j) => !w.pool || j.pool === w.pool);
        return h("tr", { "data-worker": w.id },
          h("td", {}, h("code", {}, w.id), h("div", { class: "muted" }, `${w.host} · pid ${w.pid}`)),
          h("td", {}, w.pool || "–"),
          h("td", { class: "num" }, `${num(w.busy)} / ${num(w.concurrency)}`),
          h("td", { class: "wrap" }, jobsNow.length ? jobsNow.slice(0, 8).map((j) => h("div", { class: "nowrap" },
            h("a", { href: `/ui/jobs/${j.id}`, class: "mono" }, shortID(j.id)), ` ${j.type} `, progressBar(j.progress)))
            : h("span", { class: "muted" }, "idle"), jobsNow.length > 8 ? h("div", { class: "muted" }, `and ${jobsNow.length - 8} more`) : null),
          h("td", { class: "num wide" }, num(w.done)),
          h("td", { class: "num wide" }, num(w.failed)),
          h("td", { class: "wide" }, w.version || "–"),
          h("td", { class: "wide" }, when(w.started_at)),
          h("td", {}, when(w.last_seen_at)));
      })))));
  });
});

// ---- Schedules ----------------------------------------------------------------------------

page(/^schedules$/, "schedules", async (main) => {
  document.title = "Schedules · warren";
  const region = h("div");
  main.append(h("h1", {}, "Schedules"),
    h("p", { class: "note" }, "Jobs submitted at every tick of a cron expression or interval, once per tick however many warren processes run (warren schedule add; docs/schedules.md)."),
    errorBox(), region);
  poller.start(async () => {
    const data = await api("GET", "/v1/schedules");
    const ss = data.schedules || [];
    if (!ss.length) { swap(region, h("p", { class: "empty" }, "No schedules. 'warren schedule add' adds one.")); return; }
    swap(region, h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Schedule"), h("th", {}, "When"), h("th", {}, "Type"),
        h("th", {}, "Next tick"), h("th", {}, "Last fired"), h("th", { class: "wide" }, "Last skipped"))),
      h("tbody", {}, ss.map((s) => h("tr", { "data-schedule": s.name },
        h("td", {}, h("strong", {}, s.name), s.paused ? [" ", h("span", { class: "badge" }, "paused")] : null,
          s.created_by ? h("div", { class: "muted" }, `by ${s.created_by}`) : null,
          can("admin") ? h("div", {}, h("button", { type: "button", "data-key": `toggle-${s.name}`,
            onclick: (e) => { e.target.disabled = true; act(s.paused ? "resume" : "pause",
              `/v1/schedules/${encodeURIComponent(s.name)}/${s.paused ? "resume" : "pause"}`).catch(() => { e.target.disabled = false; }); } },
            s.paused ? "Resume" : "Pause")) : null),
        h("td", { class: "wrap" }, s.every ? `every ${s.every}` : h("code", {}, s.cron), h("div", { class: "muted" }, s.every ? "" : `${s.timezone || "UTC"} · `,
          `overlap ${s.overlap} · ${s.catch_up ? "catches up" : "skips missed"}${s.jitter ? ` · jitter ${s.jitter}` : ""}`)),
        h("td", {}, h("a", { href: `/ui/jobs?meta.schedule=${encodeURIComponent(s.name)}` }, s.type)),
        h("td", { "data-col": "next" }, s.paused ? h("span", { class: "muted" }, "paused") : when(s.next_tick)),
        h("td", { "data-col": "last" }, s.last_job ? [when(s.last_tick), h("div", {},
          h("a", { href: `/ui/jobs/${s.last_job}`, class: "mono" }, shortID(s.last_job)))] : h("span", { class: "muted" }, "not yet")),
        h("td", { class: "wide" }, s.last_skipped ? [h("div", {}, s.last_skipped.reason), h("div", { class: "muted", title: s.last_skipped.error || "" },
          relative(new Date(s.last_skipped.tick)))] : "–")))))));
  });
});

// ---- Rate limits --------------------------------------------------------------------------

// per shows a limit's period as people say it: "1 s", "5 min", "1 h".
function per(text) {
  const s = goDuration(text);
  if (s >= 3600 && s % 3600 === 0) return `${s / 3600} h`;
  if (s >= 60 && s % 60 === 0) return `${s / 60} min`;
  return duration(s);
}

function rateText(r) {
  return `${num(r.limit)} per ${per(r.per)}${r.burst ? `, burst ${num(r.burst)}` : ""}`;
}

page(/^limits$/, "limits", async (main) => {
  document.title = "Rate limits · warren";
  const region = h("div");
  const dialog = h("dialog", { id: "confirm" });
  const editor = can("admin") ? limitForm() : null;
  main.append(h("h1", {}, "Rate limits"),
    h("p", { class: "note" }, "How fast each limited job type's jobs may start, across every worker of its pool, for the type as a whole and for each tenant (a metadata value). ",
      "A job over its limit is held back: it stays queued, holds no worker and counts no attempt, and is offered again when a token is due (warren limit set; docs/ratelimits.md)."),
    editor ? editor.form : null, errorBox(), region, dialog);

  const remove = (l) => {
    dialog.replaceChildren(h("form", { method: "dialog" },
      h("h2", { style: "margin-top:0" }, `Remove the rate limit of ${l.type}?`),
      h("p", {}, `Jobs of ${l.type} will start as fast as its workers take them. `,
        l.limited ? `The ${num(l.limited)} held back now start when they next check back, within a quarter of what was left of their wait.` : ""),
      h("div", { class: "actions" },
        h("button", { value: "cancel", autofocus: true }, "Keep it"),
        h("button", { value: "remove", class: "danger solid", id: "confirm-remove" }, "Remove"))));
    dialog.onclose = () => {
      if (dialog.returnValue === "remove") act("remove the limit", `/v1/limits/${encodeURIComponent(l.type)}`, undefined, "DELETE").catch(() => {});
    };
    dialog.showModal();
  };

  poller.start(async () => {
    const data = await api("GET", "/v1/limits");
    const ls = data.limits || [];
    if (!ls.length) {
      swap(region, h("p", { class: "empty" }, "No job type has a rate limit. ",
        can("admin") ? "Set one above, or with 'warren limit set'." : "An admin sets them with 'warren limit set'."));
      return;
    }
    swap(region, h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Type"), h("th", {}, "Whole type"), h("th", {}, "Per tenant"),
        h("th", { class: "num" }, "Held back now"), h("th", { class: "wide" }, "Set"), can("admin") ? h("th", {}, "") : null)),
      h("tbody", {}, ls.map((l) => h("tr", { "data-limit": l.type },
        h("td", {}, h("a", { href: `/ui/jobs?type=${encodeURIComponent(l.type)}` }, l.type)),
        h("td", { "data-col": "rate" }, l.rate ? rateText(l.rate) : h("span", { class: "muted" }, "none")),
        h("td", { "data-col": "tenant", class: "wrap" }, l.tenant ? [rateText(l.tenant), h("div", { class: "muted" }, "for each value of metadata ", h("code", {}, l.tenant.key))]
          : h("span", { class: "muted" }, "none")),
        h("td", { class: "num", "data-col": "limited" }, l.limited
          ? h("a", { href: `/ui/jobs?type=${encodeURIComponent(l.type)}&status=queued`, title: "queued, waiting in the delay levels for a token" }, num(l.limited))
          : "0"),
        h("td", { class: "wide" }, when(l.set_at), l.set_by ? h("div", { class: "muted" }, `by ${l.set_by}`) : null),
        can("admin") ? h("td", {}, h("div", { class: "actions" },
          h("button", { type: "button", "data-key": `edit-${l.type}`, onclick: () => editor.fill(l) }, "Edit"),
          h("button", { type: "button", class: "danger", "data-key": `remove-${l.type}`, onclick: () => remove(l) }, "Remove"))) : null))))));
  });
});

// limitForm is the form that sets a type's limit (PUT /v1/limits/{type}):
// the whole type's rate, a tenant's, or both. Blank fields are left out,
// and the API's error names the field it refused. fill puts a limit into
// it, to change it.
function limitForm() {
  const field = (name, props) => h("input", { name, id: `l-${name}`, ...props });
  const typeSel = field("type", { required: true, list: "l-types", placeholder: "image.resize", size: 16, autocomplete: "off" });
  const types = h("datalist", { id: "l-types" });
  api("GET", "/v1/types").then((t) => types.replaceChildren(...(t.types || []).map((x) => h("option", { value: x.name })))).catch(() => {});
  const n = (name, title) => field(name, { type: "number", min: 0, step: 1, size: 6, inputmode: "numeric", title });
  const txt = (name, placeholder, title) => field(name, { placeholder, size: 6, title });
  const els = {
    type: typeSel,
    limit: n("limit", "jobs of the type that may start per period, all tenants together; blank for no such limit"),
    per: txt("per", "1s", "the period: 1s, 1m, 1h (1 s to 24 h)"),
    burst: n("burst", "how many more may start at once after a quiet spell"),
    tenantKey: txt("tenant-key", "customer", "the metadata key whose values are the tenants"),
    tenantLimit: n("tenant-limit", "jobs each tenant's may start per period"),
    tenantPer: txt("tenant-per", "1m", "the tenant's period"),
    tenantBurst: n("tenant-burst", "the tenant's burst"),
  };
  // The API names the field it refuses: "rate.per", "tenant.key", "type".
  const byField = { type: els.type, "rate.limit": els.limit, "rate.per": els.per, "rate.burst": els.burst, rate: els.limit,
    "tenant.key": els.tenantKey, "tenant.limit": els.tenantLimit, "tenant.per": els.tenantPer, "tenant.burst": els.tenantBurst, tenant: els.tenantKey };
  const done = h("span", { class: "muted", role: "status", id: "limit-saved" });
  const button = h("button", { class: "primary", type: "submit" }, "Set limit");
  const rate = (limit, per, burst) => {
    const r = { limit: limit.value === "" ? 0 : Number(limit.value), per: per.value.trim() || "1s" };
    if (burst.value !== "") r.burst = Number(burst.value);
    return r;
  };
  const form = h("form", { class: "filters card", id: "limit-form", "aria-label": "set a rate limit", onsubmit: async (e) => {
    e.preventDefault();
    const body = {};
    if (els.limit.value !== "" || els.per.value.trim() !== "") body.rate = rate(els.limit, els.per, els.burst);
    // Without a key the API takes its default (api.tenant_key), or says it has none.
    const key = els.tenantKey.value.trim();
    if (key !== "" || els.tenantLimit.value !== "" || els.tenantPer.value.trim() !== "") {
      body.tenant = { ...(key ? { key } : {}), ...rate(els.tenantLimit, els.tenantPer, els.tenantBurst) };
    }
    button.disabled = true; done.textContent = "";
    for (const el of Object.values(els)) el.removeAttribute("aria-invalid");
    try {
      const out = await act("set the limit", `/v1/limits/${encodeURIComponent(els.type.value.trim())}`, body, "PUT");
      done.textContent = `${out.replaced ? "Changed" : "Set"} the limit of ${out.type}.`;
    } catch (err) {
      const bad = byField[err.field];
      if (bad) { bad.setAttribute("aria-invalid", "true"); bad.focus(); }
    } finally { button.disabled = false; }
  } },
    h("label", {}, "Type", typeSel, types),
    h("fieldset", {}, h("legend", {}, "The whole type"),
      h("label", {}, "Jobs", els.limit), h("label", {}, "per", els.per), h("label", {}, "Burst", els.burst)),
    h("fieldset", {}, h("legend", {}, "Each tenant"),
      h("label", {}, "Metadata key", els.tenantKey), h("label", {}, "Jobs", els.tenantLimit), h("label", {}, "per", els.tenantPer),
      h("label", {}, "Burst", els.tenantBurst)),
    h("div", { class: "actions" }, button, done));
  return { form, fill: (l) => {
    // "1h0m0s" reads better, and means the same, as "1h".
    const put = (el, v) => { el.value = v === undefined || v === null ? "" : String(v).replace(/(\D)0s$/, "$1").replace(/(\D)0m$/, "$1"); };
    put(els.type, l.type);
    put(els.limit, l.rate && l.rate.limit); put(els.per, l.rate && l.rate.per); put(els.burst, l.rate && l.rate.burst);
    put(els.tenantKey, l.tenant && l.tenant.key); put(els.tenantLimit, l.tenant && l.tenant.limit);
    put(els.tenantPer, l.tenant && l.tenant.per); put(els.tenantBurst, l.tenant && l.tenant.burst);
    els.limit.focus();
  } };
}

// ---- Autoscaling ------------------------------------------------------------------------

page(/^autoscaling$/, "autoscaling", async (main) => {
  document.title = "Autoscaling · warren";
  const region = h("div");
  main.append(h("h1", {}, "Autoscaling"),
    h("p", { class: "note" }, "Each pool's scaling policy, as its supervisor (warren autoscale, warren dev) reports it, and its recent decisions. On Kubernetes KEDA sizes the pools from the same figures and reports nothing here."),
    errorBox(), region);
  poller.start(async () => {
    const data = await api("GET", "/v1/autoscale");
    const pools = data.pools || [];
    if (!pools.length) { swap(region, h("p", { class: "empty" }, "No pools yet.")); return; }
    swap(region, pools.map(scalingCard));
  }, POLL_MS * 2);
});

// windowText shows a stabilization window: none, or how long.
function windowText(text) {
  const s = goDuration(text);
  return s <= 0 ? "none" : duration(s);
}

function scalingCard(p) {
  const pol = p.policy;
  const kv = (k, v) => [h("dt", {}, k), h("dd", { class: "num" }, v)];
  const decisions = p.decisions || [];
  return h("section", { class: "card", style: "margin-bottom:1rem", "data-pool": p.pool },
    h("h2", { style: "display:flex;gap:.5rem;align-items:center" }, p.pool,
      p.stale ? h("span", { class: "badge" }, "autoscaler stopped") : null),
    pol ? h("div", { class: "detail" },
      h("dl", { class: "kv" },
        kv("replicas now", p.current === undefined ? "–" : `${p.current} → ${p.desired}`),
        kv("last decision", p.reason || "–"),
        kv("decided", when(p.at))),
      h("dl", { class: "kv" },
        kv("min – max", `${pol.min} – ${pol.max}`),
        kv("target backlog", `${num(pol.target_backlog)} a replica`),
        pol.activation_backlog ? kv("activation backlog", num(pol.activation_backlog)) : null,
        goDuration(pol.target_age) ? kv("target age", duration(goDuration(pol.target_age))) : null,
        kv("every", duration(goDuration(pol.interval))),
        kv("stabilization", `up ${windowText(pol.scale_up_window)}, down ${windowText(pol.scale_down_window)}`),
        pol.max_step ? kv("max step", num(pol.max_step)) : null))
      : h("p", { class: "muted" }, p.note || "No autoscaler reports on this pool."),
    decisions.length ? [h("h3", {}, "Recent decisions"), h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", { class: "num" }, "Replicas"), h("th", { class: "num wide" }, "Recommended"),
        h("th", { class: "num" }, "Backlog"), h("th", { class: "num wide" }, "Oldest"), h("th", { class: "wrap" }, "Reason"))),
      h("tbody", {}, decisions.map((d) => h("tr", {},
        h("td", {}, when(d.at)),
        h("td", { class: "num" }, `${d.current} → ${d.desired}`),
        h("td", { class: "num wide" }, num(d.recommended)),
        h("td", { class: "num" }, num(d.backlog)),
        h("td", { class: "num wide" }, d.oldest_age_seconds ? duration(d.oldest_age_seconds) : "–"),
        h("td", { class: "wrap" }, d.reason))))))] : null);
}

// ---- Workflows --------------------------------------------------------------------------
// The list of workflows, and one workflow's steps as a tree with each
// member's job and status (docs/workflows.md).

const WF_MEMBER_ORDER = ["succeeded", "failed", "canceled", "running", "retrying", "queued", "scheduled", "waiting", "skipped"];

function wfCounts(counts) {
  const parts = WF_MEMBER_ORDER.filter((s) => counts && counts[s]).map((s) =>
    h("span", { class: `wf-count ${s}`, title: s }, `${num(counts[s])} ${s}`));
  return parts.length ? parts : h("span", { class: "muted" }, "–");
}

// A workflow's counts stay as they are once it and its members have ended.
const wfSettled = new Map();
function wfDone(w) {
  return TERMINAL.has(w.status) && !["running", "retrying", "queued", "scheduled"].some((s) => w.counts && w.counts[s]);
}

page(/^workflows$/, "workflows", async (main, _, q) => {
  document.title = "Workflows · warren";
  const region = h("div");
  const pager = h("div", { class: "pager" });
  main.append(h("h1", {}, "Workflows"),
    h("p", { class: "note" }, "Jobs in chains, groups and chords, newest first (warren workflow submit; docs/workflows.md)."),
    errorBox(), region, pager);
  // Pages only go forward (?before=); the ones seen are kept to go back.
  const befores = [q.get("before") || ""];
  let at = 0;
  const load = async () => {
    const p = new URLSearchParams({ limit: "20" });
    if (befores[at]) p.set("before", befores[at]);
    const data = await api("GET", `/v1/workflows?${p}`);
    const ws = data.workflows || [];
    // The list has no members: each row's counts come from the workflow
    // itself, read again only while it may change.
    const full = await Promise.all(ws.map((w) => wfSettled.get(w.id) ||
      api("GET", `/v1/workflows/${w.id}`).then((d) => { if (wfDone(d)) wfSettled.set(w.id, d); return d; }).catch(() => w)));
    befores[at + 1] = data.before || "";
    swap(region, ws.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Workflow"), h("th", {}, "Status"), h("th", { class: "num" }, "Jobs"),
        h("th", { class: "wrap" }, "Members"), h("th", { class: "wide" }, "On failure"), h("th", {}, "Created"), h("th", { class: "wide" }, "Finished"))),
      h("tbody", {}, full.map((w) => h("tr", { "data-workflow": w.id },
        h("td", {}, h("a", { href: `/ui/workflows/${w.id}`, "data-key": `wf-${w.id}` }, w.name ? h("strong", {}, w.name) : h("span", { class: "mono" }, shortID(w.id))),
          w.name ? h("div", { class: "muted mono", title: w.id }, shortID(w.id)) : null),
        h("td", {}, status(w.status)),
        h("td", { class: "num" }, num(w.jobs)),
        h("td", { class: "wrap", "data-col": "counts" }, wfCounts(w.counts)),
        h("td", { class: "wide" }, w.on_failure),
        h("td", {}, when(w.created_at)),
        h("td", { class: "wide" }, when(w.finished_at))))))) : h("p", { class: "empty" }, "No workflows. 'warren workflow submit -f FILE' submits one."));
    swap(pager,
      h("span", { class: "muted" }, `page ${at + 1}`),
      h("button", { type: "button", disabled: at === 0, "data-key": "newer", onclick: () => { at--; poller.start(load); } }, "← Newer"),
      h("button", { type: "button", disabled: !data.before, "data-key": "older", onclick: () => { at++; poller.start(load); } }, "Older →"));
  };
  poller.start(load);
});

page(/^workflows\/([0-9a-fA-F-]{36})$/, "workflows", async (main, [id]) => {
  document.title = `Workflow ${shortID(id)} · warren`;
  const head = h("h1");
  const actions = h("div", { class: "actions job-actions" });
  const region = h("div");
  main.append(h("p", { class: "crumb" }, h("a", { href: "/ui/workflows" }, "← Workflows")), head, actions, errorBox(), region);
  poller.start(async () => {
    const w = await api("GET", `/v1/workflows/${encodeURIComponent(id)}`);
    document.title = `${w.name || "Workflow " + shortID(w.id)} · warren`;
    swap(head, w.name || "Workflow", h("code", { class: "mono", style: "font-size:.6em" }, w.id), status(w.status));
    swap(actions, can("admin") && !TERMINAL.has(w.status) ? h("button", { type: "button", class: "danger", "data-key": "cancel",
      onclick: async (e) => { e.target.disabled = true; try { await act("cancel", `/v1/workflows/${w.id}/cancel`); } catch { e.target.disabled = false; } } },
    "Cancel workflow") : []);
    swap(region, wfDetail(w));
    return TERMINAL.has(w.status) && wfDone(w) ? POLL_MS * 2 : FAST_POLL_MS;
  }, FAST_POLL_MS);
});

function wfDetail(w) {
  const kv = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  const facts = h("section", { class: "card" }, h("h2", {}, "Workflow"),
    h("dl", { class: "kv" },
      kv("on failure", w.on_failure === "continue" ? "continue: the other branches go on" : "stop: the first failure ends it"),
      kv("jobs", [`${num(w.jobs)} · `, wfCounts(w.counts)]),
      kv("member jobs", h("a", { href: `/ui/jobs?${new URLSearchParams({ "meta.workflow": w.id })}` }, "list them")),
      w.submitted_by ? kv("submitted by", w.submitted_by) : null,
      kv("created", when(w.created_at)),
      w.finished_at ? kv("finished", when(w.finished_at)) : null),
    w.error ? h("div", { class: "error-box", "data-workflow-error": "" }, h("strong", {}, w.error.code), ": ", w.error.message) : null);
  const members = new Map((w.members || []).map((m) => [m.step, m]));
  const steps = h("section", { class: "card", "aria-label": "steps" }, h("h2", {}, "Steps"),
    w.steps ? h("ul", { class: "wf-tree", role: "tree" }, wfStep(w.steps, "steps", "", members)) : h("p", { class: "muted" }, "–"));
  return h("div", { class: "detail wf-detail" }, facts, steps);
}

// wfStep is one step of the tree: a job with its member's status and job,
// or a chain, group or chord with its steps under it.
function wfStep(s, path, label, members) {
  const kind = (name, hint) => [label ? h("span", { class: "muted wf-label" }, label) : null, h("span", { class: "wf-kind" }, name),
    hint ? h("span", { class: "muted" }, ` ${hint}`) : null];
  if (s.job) {
    const m = members.get(path) || { status: "waiting" };
    return h("li", { role: "treeitem", class: "wf-job", "data-step": path },
      kind("job"), " ", h("strong", {}, s.job.type), " ", h("span", { class: `status ${m.status}` }, m.status), " ",
      m.job_id ? h("a", { href: `/ui/jobs/${m.job_id}`, class: "mono", title: m.job_id }, shortID(m.job_id)) : null,
      s.take_input === false ? h("span", { class: "muted" }, " · no input") : null,
      m.error && m.status !== "succeeded" ? h("div", { class: "wf-error" }, h("code", {}, m.error.code), " ", m.error.message) : null);
  }
  const list = (steps, prefix) => steps.map((c, i) => wfStep(c, `${prefix}[${i}]`, `${i + 1}.`, members));
  if (s.chain) return h("li", { role: "treeitem", "data-step": path }, kind("chain", "one after another"), h("ul", { role: "group" }, list(s.chain, `${path}.chain`)));
  if (s.group) return h("li", { role: "treeitem", "data-step": path }, kind("group", "in parallel"), h("ul", { role: "group" }, list(s.group, `${path}.group`)));
  if (s.chord) {
    return h("li", { role: "treeitem", "data-step": path }, kind("chord", "a group, then a callback with every outcome"),
      h("ul", { role: "group" }, list(s.chord.group, `${path}.chord.group`), wfStep(s.chord.then, `${path}.chord.then`, "then", members)));
  }
  return null;
}

// ---- Start ---------------------------------------------------------------------------------

async function start() {
  renderWho();
  for (;;) {
    try { await loadSession(); break; } catch (err) {
      connection(false, err.message || "The API is not answering", 2000);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  connection(true);
  await route();
}
start();
