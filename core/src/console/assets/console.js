// statushook console: signs in with an admin token and shows what the
// admin API shows, with the same scopes. No framework and no build step:
// pages are built with DOM calls (text is always set as text, never as
// HTML), routed by the URL's #fragment.
"use strict";

const TOKEN_KEY = "statushook.token";
const REFRESH_MS = 5000;
const EXAMPLE_EVENT = {
  id: "playground-1",
  bot_id: "",
  message_id: "wamid.PLAYGROUND",
  status: "read",
  timestamp: Math.floor(Date.now() / 1000),
  recipient: "5939800000000",
  final: false,
};

let timer = null;
// True while a page redraws itself on its timer: focus stays where the
// reader left it (it moves to the content only when they navigate).
let refreshing = false;

// ---- small helpers ---------------------------------------------------------

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

/** Calls the admin API; throws {status, message} on an error answer. */
async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : body,
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

function when(ms) {
  if (!ms) return "never";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function rate(values) {
  const last = values.length ? values[values.length - 1] : 0;
  return last.toFixed(1) + "/s";
}

/** A state word with a class for colour; the word carries the meaning. */
function state(word, kind) { return el("span", { class: "state " + kind }, word); }

function outcomeState(outcome) {
  if (outcome === "delivered") return state("✓ delivered", "ok");
  if (outcome === "dead") return state("✗ dead", "bad");
  if (outcome === "suppressed") return state("⤼ suppressed", "muted");
  return state("… pending", "warn");
}

function attemptText(attempt) {
  if (!attempt) return "none yet";
  return attempt.status !== undefined ? "HTTP " + attempt.status : attempt.error;
}

function say(text) { document.getElementById("status").textContent = text; }

function page(title, ...children) {
  const main = document.getElementById("main");
  main.replaceChildren(el("h1", {}, title), ...children.filter((c) => c !== null && c !== undefined));
  document.title = title + " · statushook console";
  if (!refreshing) main.focus();
}

function failure(error) {
  if (error.status === 401) { signOut("Your token was refused; sign in again."); return; }
  page("Something went wrong", el("p", { class: "error", role: "alert" }, error.message));
}

function table(head, rows) {
  return el("div", { class: "table-wrap" },
    el("table", {},
      el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: head.length, class: "muted" }, "Nothing here.")))));
}

/** A small line chart of events/s (dashed) and deliveries/s (solid). */
function chart(activity) {
  if (activity.series_ms.length < 2) {
    return el("p", { class: "chart muted" }, "Collecting rates: a sample every 5 s.");
  }
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 120 40");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "events per second " + rate(activity.events_per_s) +
    ", deliveries per second " + rate(activity.deliveries_per_s) + ", last ten minutes");
  const all = activity.events_per_s.concat(activity.deliveries_per_s);
  const top = Math.max(1, ...all);
  for (const [series, cls] of [[activity.events_per_s, "events"], [activity.deliveries_per_s, "deliveries"]]) {
    if (series.length < 2) continue;
    const step = 120 / (series.length - 1);
    const points = series.map((v, i) => (i * step).toFixed(1) + "," + (39 - (v / top) * 37).toFixed(1));
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("class", cls);
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }
  return svg;
}

// ---- pages -------------------------------------------------------------------

function signIn(message) {
  document.getElementById("nav").hidden = true;
  const input = el("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const error = el("p", { class: "error", role: "alert" }, message || "");
  const form = el("form", {
    class: "signin",
    onsubmit: async (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      try {
        await api("GET", "/v1/bots");
        location.hash = "#/";
        route();
      } catch (e) {
        sessionStorage.removeItem(TOKEN_KEY);
        error.textContent = e.status === 401
          ? "That is not an admin token. Use a server-wide token or your bot's own admin token."
          : "Sign-in failed: " + e.message;
        input.focus();
      }
    },
  },
  el("label", { for: "token" }, "Admin token"),
  input, " ",
  el("button", { type: "submit", class: "primary" }, "Sign in"),
  error);
  page("Sign in", el("p", {}, "Sign in with an admin token from config.toml: a server-wide one sees every bot, a bot's own token sees that bot only."), form);
  input.focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = "#/";
  signIn(message);
}

async function overview() {
  const data = await api("GET", "/v1/bots");
  const cards = data.bots.map((bot) => {
    const a = bot.activity;
    const open = bot.webhooks.filter((w) => w.breaker !== "closed").length;
    return el("section", { class: "card", "aria-labelledby": "bot-" + bot.id },
      el("h2", { id: "bot-" + bot.id }, el("a", { href: "#/bot/" + encodeURIComponent(bot.id) }, bot.id)),
      chart(a),
      el("p", { class: "legend" }, "Solid: deliveries/s " + rate(a.deliveries_per_s) + " · dashed: events/s " + rate(a.events_per_s)),
      el("dl", { class: "counts" },
        el("dt", {}, "Pending now"), el("dd", {}, bot.pending),
        el("dt", {}, "Events"), el("dd", {}, a.events),
        el("dt", {}, "Delivered"), el("dd", {}, a.delivered),
        el("dt", {}, "Failed attempts"), el("dd", {}, a.failed),
        el("dt", {}, "Dead-lettered"), el("dd", {}, a.dead),
        el("dt", {}, "Open breakers"), el("dd", {}, open ? state(open + " open", "bad") : state("none", "ok"))));
  });
  const queue = data.queue
    ? el("p", {}, "Queue: " + data.queue.pending + " pending, " + data.queue.due + " due now.")
    : null;
  page("Overview",
    el("p", { class: "muted" }, "Counts and rates: this dispatcher's since " + when(data.since_ms) + ". Pending: the shared queue. Refreshes every 5 s."),
    queue,
    data.bots.length ? el("div", { class: "cards" }, cards) : el("p", {}, "No bots are configured for this token."));
  say("Updated " + when(data.now_ms));
}

function deliveryRows(bot, deliveries) {
  return deliveries.map((d) => el("tr", {},
    el("td", {}, when(d.created_ms)),
    el("td", {}, d.webhook),
    el("td", {}, d.status),
    el("td", {}, d.message_id || ""),
    el("td", {}, d.recipient || ""),
    el("td", {}, outcomeState(d.outcome)),
    el("td", {}, d.attempts.length + " · " + attemptText(d.attempts[d.attempts.length - 1])),
    el("td", {}, el("a", { href: "#/bot/" + encodeURIComponent(bot) + "/delivery/" + encodeURIComponent(d.id) }, "Details"))));
}

const DELIVERY_HEAD = ["Created", "Webhook", "Status", "Message", "Recipient", "Outcome", "Attempts · last", ""];

async function botPage(id, search) {
  const data = await api("GET", "/v1/bots?bot=" + encodeURIComponent(id));
  const bot = data.bots.find((b) => b.id === id);
  if (!bot) { page("Bot not found", el("p", {}, "No bot " + id + " for this token.")); return; }
  const hooks = bot.webhooks.map((w) => el("tr", {},
    el("th", { scope: "row" }, w.name),
    el("td", {}, w.plugin),
    el("td", {}, w.events),
    el("td", {}, w.breaker === "closed" ? state("closed (sending)", "ok") : state(w.breaker, "bad")),
    el("td", {}, w.held_until_ms ? state("held until " + when(w.held_until_ms), "warn") : state("not held", "ok")),
    el("td", {}, w.pending),
    el("td", {}, when(w.activity.last_success_ms)),
    el("td", {}, w.activity.last_failure_ms ? [when(w.activity.last_failure_ms), el("br"), el("span", { class: "muted" }, w.activity.last_error || "")] : "never"),
    el("td", {}, w.activity.delivered + " / " + w.activity.failed + " / " + w.activity.dead)));
  const query = new URLSearchParams();
  query.set("limit", "20");
  const term = (search || "").trim();
  if (term) query.set(term.startsWith("wamid") || !/^\+?\d+$/.test(term) ? "message_id" : "recipient", term.replace(/^\+/, ""));
  const log = await api("GET", "/v1/bots/" + encodeURIComponent(id) + "/deliveries?" + query);
  const input = el("input", { id: "search", type: "search", value: term, placeholder: "wamid.… or 5939…" });
  const form = el("form", {
    class: "inline", role: "search",
    onsubmit: (event) => {
      event.preventDefault();
      location.hash = "#/bot/" + encodeURIComponent(id) + (input.value.trim() ? "?q=" + encodeURIComponent(input.value.trim()) : "");
    },
  }, el("div", {}, el("label", { for: "search" }, "Find by message_id or phone number"), input), el("button", { type: "submit" }, "Search"));
  page("Bot " + id,
    el("h2", {}, "Webhooks"),
    table(["Webhook", "Plugin", "Events", "Breaker", "Lane", "Pending", "Last success", "Last failure", "Delivered / failed / dead"], hooks),
    el("h2", {}, term ? "Deliveries matching " + term : "Recent deliveries"),
    form,
    table(DELIVERY_HEAD, deliveryRows(id, log.deliveries)));
  say("Updated " + when(data.now_ms));
}

async function deliveryPage(bot, id) {
  const data = await api("GET", "/v1/bots/" + encodeURIComponent(bot) + "/deliveries/" + encodeURIComponent(id));
  const d = data.delivery;
  const r = data.request;
  const result = el("p", { class: "result", role: "status" });
  const resend = el("button", {
    type: "button", class: "primary",
    onclick: async () => {
      try {
        await api("POST", "/v1/bots/" + encodeURIComponent(bot) + "/deliveries/" + encodeURIComponent(id) + "/resend");
        result.textContent = "Resent: queued again with the same webhook-id.";
      } catch (e) {
        result.textContent = "Not resent: " + e.message;
      }
    },
  }, "Resend");
  const attempts = d.attempts.map((a, n) => el("tr", {},
    el("td", {}, n + 1),
    el("td", {}, when(a.at_ms)),
    el("td", {}, a.status !== undefined ? state("HTTP " + a.status, a.status < 300 ? "ok" : "bad") : state(a.error, "bad")),
    el("td", {}, a.duration_ms + " ms"),
    el("td", {}, a.response ? el("pre", {}, a.response) : el("span", { class: "muted" }, "no body"))));
  const headers = (r.headers || []).map(([name, value]) => name + ": " + value).join("\n");
  page("Delivery " + d.id,
    el("dl", { class: "counts" },
      el("dt", {}, "Bot / webhook"), el("dd", {}, d.bot + " / " + d.webhook),
      el("dt", {}, "Event"), el("dd", {}, d.event_id + " (" + d.status + ")"),
      el("dt", {}, "Message"), el("dd", {}, d.message_id || "—"),
      el("dt", {}, "Recipient"), el("dd", {}, d.recipient || "—"),
      el("dt", {}, "Outcome"), el("dd", {}, outcomeState(d.outcome), d.reason ? " — " + d.reason : "")),
    resend, result,
    el("h2", {}, "Attempts"),
    table(["#", "Started", "Answer", "Took", "Response (first 1 KiB)"], attempts),
    el("h2", {}, "Request"),
    el("pre", { "aria-label": "request" }, r.method + " " + (r.url || "(webhook removed)") + "\n" + headers + "\n\n" + (r.body !== null ? r.body : "base64: " + r.body_base64)));
}

async function deadLetters(chosen) {
  const data = await api("GET", "/v1/bots");
  const bots = data.bots.map((b) => b.id);
  const bot = chosen || bots[0];
  const select = el("select", { id: "dead-bot", onchange: () => { location.hash = "#/dead-letters/" + encodeURIComponent(select.value); } },
    bots.map((b) => el("option", { value: b, selected: b === bot }, b)));
  if (!bot) { page("Dead letters", el("p", {}, "No bots for this token.")); return; }
  const list = await api("GET", "/v1/bots/" + encodeURIComponent(bot) + "/dead-letters?limit=100");
  const result = el("p", { class: "result", role: "status" });
  const replay = async (id) => {
    const path = "/v1/bots/" + encodeURIComponent(bot) + "/dead-letters/replay" + (id ? "?id=" + encodeURIComponent(id) : "");
    try {
      const answer = await api("POST", path);
      result.textContent = "Replayed " + answer.replayed + (answer.replayed === 1 ? " delivery." : " deliveries.");
    } catch (e) {
      result.textContent = "Replay failed: " + e.message;
    }
  };
  const rows = list.dead_letters.map((d) => el("tr", {},
    el("td", {}, when(d.dead_ms)),
    el("td", {}, d.webhook),
    el("td", {}, d.status),
    el("td", {}, d.reason),
    el("td", {}, d.attempts.length),
    el("td", {}, el("a", { href: "#/bot/" + encodeURIComponent(bot) + "/delivery/" + encodeURIComponent(d.id) }, "Details"), " ",
      el("button", { type: "button", onclick: () => replay(d.id) }, "Replay"))));
  page("Dead letters",
    el("form", { class: "inline", onsubmit: (e) => e.preventDefault() },
      el("div", {}, el("label", { for: "dead-bot" }, "Bot"), select),
      el("button", { type: "button", class: "primary", onclick: () => replay(null), disabled: rows.length === 0 }, "Replay all")),
    result,
    table(["Died", "Webhook", "Status", "Reason", "Attempts", ""], rows));
}

async function configPage() {
  const data = await api("GET", "/v1/config");
  const reloads = data.reloads === null
    ? el("p", { class: "muted" }, "The reload history names every tenant's bots: it is shown to server-wide tokens only.")
    : table(["When", "Result", "Took", "What changed"], data.reloads.map((r) => el("tr", {},
      el("td", {}, when(r.at_ms)),
      el("td", {}, state(r.result, r.result === "ok" ? "ok" : r.result === "error" ? "bad" : "warn")),
      el("td", {}, r.took_ms + " ms"),
      el("td", {}, el("pre", {}, r.summary)))));
  page("Config",
    el("p", { class: "muted" }, "The effective config this dispatcher runs, secrets shown as <redacted>."),
    el("pre", { "aria-label": "effective config" }, data.config),
    el("h2", {}, "Reloads"),
    reloads);
}

async function playground() {
  const data = await api("GET", "/v1/bots");
  const options = data.bots.flatMap((b) => b.webhooks.map((w) => el("option", { value: b.id + "/" + w.name }, b.id + " / " + w.name + " (" + w.plugin + ")")));
  const select = el("select", { id: "pg-webhook" }, options);
  const event = Object.assign({}, EXAMPLE_EVENT, { bot_id: data.bots.length ? data.bots[0].id : "" });
  const textarea = el("textarea", { id: "pg-event", spellcheck: "false" }, JSON.stringify(event, null, 2));
  const output = el("div", { id: "pg-output", "aria-live": "polite" });
  const form = el("form", {
    onsubmit: async (e) => {
      e.preventDefault();
      const [bot, webhook] = select.value.split("/");
      output.replaceChildren(el("p", { class: "muted" }, "Rendering…"));
      try {
        const answer = await api("POST", "/v1/bots/" + encodeURIComponent(bot) + "/webhooks/" + encodeURIComponent(webhook) + "/preview", textarea.value);
        if (answer.outcome !== "rendered") {
          output.replaceChildren(el("p", { class: "result" }, answer.outcome.replace("_", " ") + ": " + answer.message));
          return;
        }
        const r = answer.request;
        const headers = r.headers.map(([name, value]) => name + ": " + value).join("\n");
        output.replaceChildren(
          el("p", { class: "result" }, "The request the receiver would get (nothing was sent):"),
          el("pre", { "aria-label": "rendered request" }, r.method + " " + r.url + "\n" + headers + "\n\n" + (r.body !== null ? r.body : "base64: " + r.body_base64)));
      } catch (err) {
        output.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
      }
    },
  },
  el("label", { for: "pg-webhook" }, "Webhook"), select,
  el("label", { for: "pg-event" }, "Canonical event (JSON; its bot_id is taken from the webhook)"), textarea,
  el("p", {}, el("button", { type: "submit", class: "primary" }, "Render")));
  page("Plugin playground", form, output);
}

// ---- routing -----------------------------------------------------------------

async function route() {
  clearInterval(timer);
  timer = null;
  say("");
  if (!token()) { signIn(); return; }
  document.getElementById("nav").hidden = false;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, queryString] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll("nav a")) {
    const target = link.getAttribute("href").replace(/^#/, "");
    const current = target === "/" ? parts.length === 0 || parts[0] === "bot" : path.startsWith(target);
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  const refresh = (show) => {
    timer = setInterval(() => {
      // Not while the reader is on something in the page (a link, a
      // field): redrawing would take it from under them.
      const main = document.getElementById("main");
      const focused = document.activeElement;
      if (focused && focused !== main && main.contains(focused)) return;
      refreshing = true;
      show().catch(() => {}).finally(() => { refreshing = false; });
    }, REFRESH_MS);
  };
  try {
    if (parts.length === 0) { await overview(); refresh(overview); }
    else if (parts[0] === "bot" && parts.length === 2) {
      const q = new URLSearchParams(queryString || "").get("q") || "";
      await botPage(parts[1], q);
      refresh(() => botPage(parts[1], q));
    } else if (parts[0] === "bot" && parts[2] === "delivery") await deliveryPage(parts[1], parts[3]);
    else if (parts[0] === "dead-letters") await deadLetters(parts[1]);
    else if (parts[0] === "config") await configPage();
    else if (parts[0] === "playground") await playground();
    else page("Not found", el("p", {}, "No such page."));
  } catch (error) {
    failure(error);
  }
}

document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", route);
route();
