// logstore console: the page over the JSON API of `logstore ui` (issue 18).
// Plain JavaScript, no build step and no framework; uPlot (static/vendor/) draws the lag
// chart. Hash routes:
//   #/                         overview: store, topics, groups
//   #/topics/NAME              a topic: partitions, segments, compaction, config
//   #/topics/NAME/records?...  the record browser (partition, offset|timestamp, filters)
//   #/groups, #/groups/NAME    consumer groups; one group's members, offsets and live lag
//   #/dlq, #/dlq/NAME          dead-letter topics; one topic's letters and re-drive
//   #/api                      the JSON API's endpoints (from /openapi.json)
// Every page sets <main data-page=...> at once and data-ready="true" when its data is
// shown (the browser tests wait on it). Every change is two POSTs: a preview, shown in the
// confirmation dialog, then the same body with "confirm": true.

const REFRESH_MS = 3000;
const CHART_POINTS = 1800; // samples kept on the live chart
const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777",
  "#65a30d", "#ea580c", "#4f46e5", "#0d9488", "#b45309", "#7c3aed"];

const main = document.getElementById("main");
let store = null; // /api/store
let leaveHooks = []; // run when the route changes (timers, EventSources, charts)
let routeSeq = 0; // a page's async work stops drawing once another route started
let openStreams = 0;

// -- small helpers ------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "testid") el.dataset.testid = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function setMain(...children) {
  main.replaceChildren();
  append(main, children);
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const enc = encodeURIComponent;
const nf = new Intl.NumberFormat("en-US");

function num(n) {
  return n === null || n === undefined ? "—" : nf.format(n);
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

function rate(r) {
  if (r === null || r === undefined) return "—";
  return `${r >= 100 ? nf.format(Math.round(r)) : r.toFixed(1)}/s`;
}

function pad(n, w = 2) {
  return String(n).padStart(w, "0");
}

function time(ms) {
  if (ms === null || ms === undefined || ms < 0) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function timeCell(ms) {
  return h("td", { class: "mono nowrap", title: ms >= 0 ? `${new Date(ms).toISOString()} (${ms})` : null }, time(ms));
}

function localInputValue(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T`
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function link(href, text, attrs) {
  return h("a", { href, ...attrs }, text);
}

function topicHref(name) {
  return `#/topics/${enc(name)}`;
}

function recordsHref(topic, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return `#/topics/${enc(topic)}/records${s ? `?${s}` : ""}`;
}

function badge(text, kind, attrs) {
  return h("span", { class: `badge badge-${kind || "plain"}`, ...attrs }, text);
}

function table(testid, headers, rows, attrs) {
  return h("table", { class: "table", testid, ...attrs },
    h("thead", {}, h("tr", {}, headers.map((x) => (x instanceof Node ? x : h("th", { class: thClass(x) }, x))))),
    h("tbody", {}, rows));
}

function thClass(label) {
  return /^(Partitions|Records|Size|Produce rate|Start|End|Lag|Members|Committed|Base|Next|Offset|Attempts|Pending|Re-driven|Dead letters|From|To|Count|Segments|Partition|Log end|First dirty|Dirty ratio|Clean|Dirty|Reclaimed|Runs)$/.test(label) ? "num" : null;
}

function emptyRow(cols, text) {
  return h("tr", { class: "empty" }, h("td", { colspan: cols }, text));
}

function tile(label, value, testid) {
  return h("div", { class: "tile", testid },
    h("div", { class: "tile-value" }, value), h("div", { class: "tile-label" }, label));
}

function section(title, ...body) {
  return h("section", { class: "card" }, title ? h("h2", { class: "card-title" }, title) : null, body);
}

function writesNote() {
  return h("span", { class: "writes-note", testid: "writes-note" },
    "Read-only: start ", h("code", {}, "logstore ui --allow-writes"), " to make changes.");
}

function writeButton(label, testid, onclick, kind = "btn-danger") {
  const allowed = Boolean(store && store.allow_writes);
  return h("button", {
    type: "button", class: `btn ${kind}`, testid, disabled: !allowed,
    title: allowed ? null : "start logstore ui --allow-writes", onclick,
  }, label);
}

// -- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options) {
  let resp;
  try {
    resp = await fetch(path, { headers: { Accept: "application/json" }, ...options });
  } catch (err) {
    throw new ApiError(0, "network", `The console server did not answer (${err.message}); is logstore ui still running?`);
  }
  const type = resp.headers.get("content-type") || "";
  const body = type.includes("json") ? await resp.json().catch(() => null) : null;
  if (!resp.ok) {
    if (body && typeof body.message === "string") throw new ApiError(resp.status, body.error || "error", body.message);
    if (body && body.detail) throw new ApiError(resp.status, "invalid_request", JSON.stringify(body.detail));
    throw new ApiError(resp.status, "http", `${options && options.method || "GET"} ${path} answered HTTP ${resp.status}.`);
  }
  if (body === null) throw new ApiError(resp.status, "http", `${path} did not answer JSON.`);
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

// -- banners and the confirmation dialog ----------------------------------------------------

const errorBanner = document.querySelector('[data-testid="error-banner"]');
const resultBanner = document.querySelector('[data-testid="result-banner"]');

function showError(err) {
  const code = err instanceof ApiError && err.status ? ` (${err.status} ${err.code})` : "";
  errorBanner.querySelector(".banner-text").textContent = `${err.message}${code}`;
  errorBanner.dataset.code = err.code || "";
  errorBanner.hidden = false;
  if (!(err instanceof ApiError)) console.error(err);
}

function showResult(text) {
  resultBanner.querySelector(".banner-text").textContent = text;
  resultBanner.hidden = false;
}

function clearBanners() {
  errorBanner.hidden = true;
  resultBanner.hidden = true;
}

errorBanner.querySelector("button").addEventListener("click", () => { errorBanner.hidden = true; });
resultBanner.querySelector("button").addEventListener("click", () => { resultBanner.hidden = true; });

const dialog = document.querySelector('[data-testid="confirm-dialog"]');

function confirmDialog(title, body, { confirmLabel = "Confirm", canConfirm = true } = {}) {
  dialog.querySelector('[data-testid="confirm-title"]').textContent = title;
  const holder = dialog.querySelector('[data-testid="confirm-body"]');
  holder.replaceChildren(body);
  const ok = dialog.querySelector('[data-testid="confirm-ok"]');
  ok.textContent = confirmLabel;
  ok.disabled = !canConfirm;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    (canConfirm ? ok : dialog.querySelector('[data-testid="confirm-cancel"]')).focus();
  });
}

// A change in two steps: POST the body (a preview: nothing changes), show what it would do,
// and on Confirm POST it again with "confirm": true (and the preview's "confirm_with").
// `describe(preview)` gives the dialog's body and whether there is anything to confirm;
// `done(result)` the line shown after.
async function twoStep({ title, url, body, describe, done, confirmLabel }) {
  clearBanners();
  let preview;
  try {
    preview = await post(url, body);
  } catch (err) {
    showError(err);
    return null;
  }
  const { node, canConfirm } = describe(preview);
  const ok = await confirmDialog(title, node, { confirmLabel, canConfirm });
  if (!ok) return null;
  try {
    // the preview may pin what is confirmed to what it showed ("through": the letters
    // counted, not those dead-lettered since)
    const result = await post(url, { ...body, ...(preview.confirm_with || {}), confirm: true });
    showResult(done(result));
    return result;
  } catch (err) {
    showError(err);
    return null;
  }
}

// -- payloads: JSON pretty-printed, text as text, binary as a hex dump ----------------------

const JSON_TOKEN = /("(?:\\u[0-9a-fA-F]{4}|\\[^u]|[^\\"])*"(\s*:)?|\b(?:true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

// JSON re-indented from the record's own text (as JSON.stringify(v, null, 2) lays it out),
// not from a parsed value: a number is shown as written, never rounded to a double
// (an id above 2^53 stays exact), and keys keep their order and duplicates.
function prettyJson(text) {
  let out = "";
  let depth = 0;
  let i = 0;
  const newline = () => `\n${"  ".repeat(depth)}`;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    if (c === "{" || c === "[") {
      let j = i + 1;
      while (j < text.length && /\s/.test(text[j])) j += 1;
      if (text[j] === (c === "{" ? "}" : "]")) { // empty: {} or []
        out += c + text[j];
        i = j + 1;
        continue;
      }
      depth += 1;
      out += c + newline();
    } else if (c === "}" || c === "]") {
      depth -= 1;
      out += newline() + c;
    } else if (c === ",") {
      out += `,${newline()}`;
    } else if (c === ":") {
      out += ": ";
    } else if (!/\s/.test(c)) {
      out += c;
    }
    i += 1;
  }
  return out;
}

function jsonNode(source) {
  const text = prettyJson(source);
  const pre = h("pre", { class: "payload payload-json", dataset: { encoding: "json" } });
  let last = 0;
  for (const m of text.matchAll(JSON_TOKEN)) {
    if (m.index > last) pre.append(text.slice(last, m.index));
    const tok = m[0];
    let cls = "j-num";
    if (tok.startsWith('"')) cls = m[2] ? "j-key" : "j-str";
    else if (tok === "true" || tok === "false") cls = "j-bool";
    else if (tok === "null") cls = "j-null";
    pre.append(h("span", { class: cls }, tok));
    last = m.index + tok.length;
  }
  if (last < text.length) pre.append(text.slice(last));
  return pre;
}

function hexDump(hex) {
  const lines = [];
  for (let at = 0; at < hex.length; at += 32) {
    const chunk = hex.slice(at, at + 32);
    const pairs = chunk.match(/../g) || [];
    const left = pairs.slice(0, 8).join(" ");
    const right = pairs.slice(8).join(" ");
    const ascii = pairs.map((p) => {
      const c = parseInt(p, 16);
      return c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : ".";
    }).join("");
    lines.push(`${(at / 2).toString(16).padStart(8, "0")}  ${left.padEnd(23)}  ${right.padEnd(23)}  |${ascii}|`);
  }
  return lines.join("\n");
}

function payloadNode(p, testid) {
  if (p === null || p === undefined) return h("span", { class: "null", testid }, "null");
  let node;
  if (p.encoding === "json") node = jsonNode(p.text);
  else if (p.encoding === "binary") node = h("pre", { class: "payload payload-hex", dataset: { encoding: "binary" } }, hexDump(p.hex || ""));
  else node = h("pre", { class: "payload payload-text", dataset: { encoding: "text" } }, p.text);
  if (testid) node.dataset.testid = testid;
  const wrap = h("div", { class: "payload-wrap" }, node);
  if (p.truncated || p.encoding === "binary") {
    wrap.append(h("div", { class: "payload-meta" },
      `${p.encoding}, ${bytes(p.size)}${p.truncated ? ` — showing the first ${p.encoding === "binary" ? "4 KiB" : "64 KiB"}` : ""}`));
  }
  return wrap;
}

function payloadPreview(p, max = 80) {
  if (p === null || p === undefined) return h("span", { class: "null" }, "null");
  let text;
  if (p.encoding === "json") text = p.text.replace(/\s*\n\s*/g, " ");
  else if (p.encoding === "binary") text = `0x${(p.hex || "").slice(0, 32)}${p.size > 16 ? "…" : ""}`;
  else text = p.text || "";
  if (text.length > max) text = `${text.slice(0, max)}…`;
  return h("span", { class: `mono preview preview-${p.encoding}`, title: p.encoding === "binary" ? `${p.size} bytes` : null }, text);
}

function headersNode(headers) {
  if (!headers || headers.length === 0) return h("span", { class: "muted" }, "—");
  return h("div", { class: "headers" }, headers.map((x) => h("div", { class: "header-kv" },
    h("span", { class: "header-key" }, x.key), " ", payloadPreview(x.value, 60))));
}

// -- routing ----------------------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query || "") };
}

function route() {
  const { parts, query } = parseHash();
  if (parts.length === 0) return ["overview", pageOverview, []];
  if (parts[0] === "topics" && parts.length === 2) return ["topic", pageTopic, [parts[1]]];
  if (parts[0] === "topics" && parts.length === 3 && parts[2] === "records") return ["records", pageRecords, [parts[1], query]];
  if (parts[0] === "groups" && parts.length === 1) return ["groups", pageGroups, []];
  if (parts[0] === "groups" && parts.length === 2) return ["group", pageGroup, [parts[1]]];
  if (parts[0] === "dlq" && parts.length === 1) return ["dlq-list", pageDlqList, []];
  if (parts[0] === "dlq" && parts.length === 2) return ["dlq", pageDlq, [parts[1], query]];
  if (parts[0] === "api" && parts.length === 1) return ["api", pageApi, []];
  return ["not-found", pageNotFound, [location.hash]];
}

const NAV_OF = { overview: "overview", topic: "overview", records: "overview", groups: "groups", group: "groups", "dlq-list": "dlq", dlq: "dlq", api: "api" };

function leave() {
  for (const fn of leaveHooks.splice(0)) {
    try {
      fn();
    } catch (err) {
      console.error(err);
    }
  }
}

function onLeave(fn) {
  leaveHooks.push(fn);
}

async function render() {
  leave();
  if (dialog.open) dialog.close("cancel");
  const seq = ++routeSeq;
  const [page, fn, args] = route();
  main.dataset.page = page;
  main.dataset.ready = "false";
  delete main.dataset.error;
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === NAV_OF[page]);
  const ctx = {
    seq,
    live: () => seq === routeSeq,
    ready: () => {
      if (seq === routeSeq) main.dataset.ready = "true";
    },
  };
  try {
    await fn(ctx, ...args);
  } catch (err) {
    if (!ctx.live()) return;
    showError(err);
    main.dataset.error = err.code || "error";
    if (!main.querySelector(".page-head")) setMain(pageHead("Could not load this page", null));
    main.append(h("p", { class: "muted", testid: "page-error" }, err.message));
  }
  ctx.ready();
}

function pageHead(title, sub, ...right) {
  return h("div", { class: "page-head" },
    h("div", {}, h("h1", { testid: "page-title" }, title), sub ? h("div", { class: "page-sub" }, sub) : null),
    h("div", { class: "page-actions" }, right));
}

function crumbs(...items) {
  return h("nav", { class: "crumbs", testid: "crumbs" }, items.map((x, i) => [i ? h("span", { class: "sep" }, "/") : null, x]));
}

// Poll `load` every REFRESH_MS while the page is shown; `draw(data)` redraws in place.
function every(ctx, load, draw, ms = REFRESH_MS) {
  let busy = false;
  const timer = setInterval(async () => {
    if (busy || !ctx.live() || document.hidden) return;
    busy = true;
    try {
      const data = await load();
      if (ctx.live()) draw(data);
    } catch (err) {
      if (ctx.live()) showError(err);
    } finally {
      busy = false;
    }
  }, ms);
  onLeave(() => clearInterval(timer));
}

// -- overview ---------------------------------------------------------------------------------

async function pageOverview(ctx) {
  const load = () => Promise.all([api("/api/store"), api("/api/topics"), api("/api/groups")]);
  const [st, topics, groups] = await load();
  if (!ctx.live()) return;
  store = st;
  drawStoreInfo();
  const tiles = h("div", { class: "tiles", testid: "overview-tiles" });
  const body = h("tbody", {});
  const topicsTable = h("table", { class: "table", testid: "topics-table" },
    h("thead", {}, h("tr", {}, ["Topic", "Partitions", "Records", "Size", "Produce rate", "Cleanup policy", ""].map((x) => h("th", { class: thClass(x) }, x)))),
    body);
  const draw = ([s, t, g]) => {
    store = s;
    drawStoreInfo();
    const list = t.topics.slice().sort((a, b) => a.name.localeCompare(b.name));
    const sum = (f) => list.reduce((acc, x) => acc + (x[f] || 0), 0);
    const sizeKnown = list.every((x) => x.size_bytes !== null);
    const rates = list.filter((x) => x.produce_rate !== null);
    tiles.replaceChildren(
      tile("Topics", num(list.length), "tile-topics"),
      tile("Partitions", num(sum("partitions")), "tile-partitions"),
      tile("Records", num(sum("records")), "tile-records"),
      tile("Size", sizeKnown ? bytes(sum("size_bytes")) : "—", "tile-size"),
      tile("Produce rate", rates.length ? rate(rates.reduce((a, x) => a + x.produce_rate, 0)) : "—", "tile-rate"),
      h("a", { class: "tile tile-link", href: "#/groups", testid: "tile-groups" },
        h("div", { class: "tile-value", testid: "groups-count" }, num(g.groups.length)),
        h("div", { class: "tile-label" }, "Consumer groups")),
    );
    body.replaceChildren(...(list.length ? list.map((x) => h("tr", { testid: "topic-row", dataset: { name: x.name } },
      h("td", {}, link(topicHref(x.name), x.name, { class: "strong", testid: "topic-link" }),
        x.dead_letter ? [" ", badge("DLQ", "warn")] : null,
        x.name.startsWith("__") ? [" ", badge("internal", "plain")] : null),
      h("td", { class: "num" }, num(x.partitions)),
      h("td", { class: "num", testid: "topic-records" }, num(x.records)),
      h("td", { class: "num" }, bytes(x.size_bytes)),
      h("td", { class: "num", testid: "topic-rate" }, rate(x.produce_rate)),
      h("td", {}, x.cleanup_policy.includes("compact") ? badge(x.cleanup_policy, "info") : h("span", { class: "muted" }, x.cleanup_policy)),
      h("td", { class: "row-actions" }, link(recordsHref(x.name), "Browse", { class: "btn btn-small" })),
    )) : [emptyRow(7, "No topics yet.")]));
  };
  draw([st, topics, groups]);
  setMain(
    pageHead("Overview", h("span", { testid: "store-target" },
      `${st.kind === "kafka" ? "Kafka cluster" : "Local store"} `, h("code", {}, st.target))),
    tiles,
    section("Topics", topicsTable),
  );
  ctx.ready();
  every(ctx, load, draw);
}

function drawStoreInfo() {
  const el = document.querySelector('[data-testid="store-info"]');
  if (!store) return;
  el.replaceChildren(
    h("span", { class: "store-kind" }, store.kind === "kafka" ? "kafka" : "local"),
    h("span", { class: "store-target", title: store.target }, store.target),
    store.allow_writes ? badge("writes allowed", "warn", { testid: "mode-badge" }) : badge("read-only", "plain", { testid: "mode-badge" }),
    h("span", { class: "store-version" }, `v${store.version}`),
  );
}

// -- one topic --------------------------------------------------------------------------------

async function pageTopic(ctx, name) {
  setMain(crumbs(link("#/", "Overview"), name));
  const t = await api(`/api/topics/${enc(name)}`);
  if (!ctx.live()) return;
  const compacted = (t.config["cleanup.policy"] || "").includes("compact") || t.partitions.some((p) => p.compaction);
  const local = t.partitions.every((p) => p.segments !== null);
  const partRows = t.partitions.map((p) => h("tr", { testid: "partition-row", dataset: { partition: p.partition } },
    h("td", { class: "num" }, p.partition),
    h("td", { class: "num mono", testid: "start-offset" }, num(p.start_offset)),
    h("td", { class: "num mono", testid: "end-offset" }, num(p.end_offset)),
    h("td", { class: "num" }, num(p.records)),
    h("td", { class: "num" }, bytes(p.size_bytes)),
    h("td", { class: "num" }, p.segments ? num(p.segments.length) : "—"),
    h("td", { class: "row-actions" },
      link(recordsHref(name, { partition: p.partition }), "Browse", { class: "btn btn-small", testid: "browse-partition" }),
      " ",
      link(recordsHref(name, { partition: p.partition, offset: Math.max(p.start_offset, p.end_offset - 50) }), "Newest", { class: "btn btn-small" })),
  ));
  const segments = local ? h("div", { class: "segments", testid: "segments" }, t.partitions.map((p) => h("details", { open: t.partitions.length <= 4 || null },
    h("summary", {}, `Partition ${p.partition}: ${p.segments.length} segment(s), ${bytes(p.size_bytes)}`),
    table("segments-table", ["Base", "Next", "Size", "Newest record"], p.segments.map((s) => h("tr", { testid: "segment-row" },
      h("td", { class: "num mono" }, num(s.base_offset)),
      h("td", { class: "num mono" }, num(s.next_offset)),
      h("td", { class: "num" }, bytes(s.size_bytes)),
      timeCell(s.max_timestamp)))))))
    : h("p", { class: "muted" }, "Segments are shown for a local store only.");
  const comp = t.partitions.filter((p) => p.compaction);
  const compaction = compacted ? section("Compaction",
    comp.length ? table("compaction-table", ["Partition", "First dirty", "Dirty ratio", "Due", "Clean", "Dirty", "Reclaimed", "Runs", "Last run"],
      comp.map((p) => {
        const c = p.compaction;
        return h("tr", { testid: "compaction-row" },
          h("td", { class: "num" }, p.partition),
          h("td", { class: "num mono" }, num(c.first_dirty_offset)),
          h("td", { class: "num" }, c.dirty_ratio === null ? "—" : `${(c.dirty_ratio * 100).toFixed(1)}%`),
          h("td", {}, c.due ? badge("due", "warn") : h("span", { class: "muted" }, "no")),
          h("td", { class: "num" }, bytes(c.clean_bytes)),
          h("td", { class: "num" }, bytes(c.dirty_bytes)),
          h("td", { class: "num" }, bytes(c.bytes_reclaimed)),
          h("td", { class: "num" }, num(c.runs)),
          timeCell(c.last_run_ms));
      }), { class: "table table-tight" })
      : h("p", { class: "muted" }, "No compaction state (a Kafka cluster does not report it).")) : null;
  const config = Object.entries(t.config).sort(([a], [b]) => a.localeCompare(b));
  const deleteTopic = () => twoStep({
    title: `Delete topic ${name}?`,
    url: `/api/topics/${enc(name)}/delete`,
    body: {},
    confirmLabel: "Delete topic",
    describe: (p) => ({
      canConfirm: true,
      node: h("p", {}, "This deletes topic ", h("strong", {}, p.topic || name), ` and its ${num(p.records)} record(s), in every partition. It cannot be undone.`),
    }),
    done: (r) => `Deleted topic '${r.topic || name}' (${num(r.records)} record(s)).`,
  }).then((r) => {
    if (r && ctx.live()) location.hash = "#/";
  });
  setMain(
    crumbs(link("#/", "Overview"), name),
    pageHead(name, h("span", {}, `${t.partitions.length} partition(s)`, compacted ? [" · ", badge("compacted", "info", { testid: "compacted-badge" })] : null,
      t.dead_letter ? [" · ", badge("dead letters", "warn"), " ", link(`#/dlq/${enc(name)}`, "open in dead letters", { testid: "dlq-link" })] : null),
    link(recordsHref(name), "Browse records", { class: "btn btn-primary", testid: "browse-records" }),
    writeButton("Delete topic", "delete-topic", deleteTopic)),
    store && !store.allow_writes ? h("div", { class: "note-line" }, writesNote()) : null,
    h("div", { class: "tiles" },
      tile("Partitions", num(t.partitions.length)),
      tile("Records", num(t.records), "tile-records"),
      tile("Size", bytes(t.size_bytes)),
      tile("Produce rate", rate(t.produce_rate))),
    section("Partitions", table("partitions-table", ["Partition", "Start", "End", "Records", "Size", "Segments", ""], partRows)),
    compaction,
    h("div", { class: "two-col" },
      section("Segments", segments),
      section("Configuration", table("config-table", ["Setting", "Value"], config.map(([k, v]) => h("tr", { testid: "config-row", dataset: { key: k } },
        h("td", { class: "mono" }, k), h("td", { class: "mono" }, String(v)))), { class: "table table-tight" }))),
  );
}

// -- the record browser -----------------------------------------------------------------------

const pageStack = new Map(); // filtered browsing has no prev_offset: where the pages began

async function pageRecords(ctx, name, query) {
  setMain(crumbs(link("#/", "Overview"), link(topicHref(name), name), "records"));
  const t = await api(`/api/topics/${enc(name)}`);
  if (!ctx.live()) return;
  const partition = query.has("partition") ? Number(query.get("partition")) : t.partitions[0].partition;
  const pinfo = t.partitions.find((p) => p.partition === partition);
  const limit = query.get("limit") || "50";
  const filters = { key: query.get("key") || "", value: query.get("value") || "", header: query.get("header") || "" };
  const mode = query.has("timestamp") ? "time" : "offset";
  const base = { partition, limit: limit === "50" ? null : limit, ...filters };
  const go = (extra) => {
    location.hash = recordsHref(name, { ...base, ...extra });
  };

  // the form
  const partSelect = h("select", { testid: "partition-select", name: "partition" },
    t.partitions.map((p) => h("option", { value: p.partition, selected: p.partition === partition || null },
      `${p.partition}  (${num(p.start_offset)}..${num(p.end_offset)})`)));
  const modeSelect = h("select", { testid: "start-mode", name: "mode" },
    h("option", { value: "offset", selected: mode === "offset" || null }, "offset"),
    h("option", { value: "time", selected: mode === "time" || null }, "time"));
  const offsetInput = h("input", { type: "number", min: 0, testid: "offset-input", name: "offset", placeholder: pinfo ? String(pinfo.start_offset) : "0", value: query.get("offset") || "" });
  const ts = query.get("timestamp");
  const timeInput = h("input", { type: "datetime-local", step: "1", testid: "time-input", name: "time", value: ts ? localInputValue(Number(ts)) : "" });
  const keyInput = h("input", { type: "search", testid: "filter-key", name: "key", placeholder: "substring", value: filters.key });
  const valueInput = h("input", { type: "search", testid: "filter-value", name: "value", placeholder: "substring", value: filters.value });
  const headerInput = h("input", { type: "search", testid: "filter-header", name: "header", placeholder: "NAME or NAME=text", value: filters.header });
  const limitSelect = h("select", { testid: "limit-select", name: "limit" },
    ["10", "20", "50", "100", "200", "500"].map((n) => h("option", { value: n, selected: n === limit || null }, n)));
  const syncMode = () => {
    offsetInput.hidden = modeSelect.value !== "offset";
    timeInput.hidden = modeSelect.value !== "time";
  };
  modeSelect.addEventListener("change", syncMode);
  syncMode();
  const apply = (ev) => {
    ev.preventDefault();
    const params = {
      partition: partSelect.value,
      limit: limitSelect.value === "50" ? null : limitSelect.value,
      key: keyInput.value, value: valueInput.value, header: headerInput.value,
    };
    if (modeSelect.value === "time" && timeInput.value) params.timestamp = new Date(timeInput.value).getTime();
    else if (modeSelect.value === "offset" && offsetInput.value !== "") params.offset = offsetInput.value;
    location.hash = recordsHref(name, params);
  };
  partSelect.addEventListener("change", () => {
    location.hash = recordsHref(name, { partition: partSelect.value, limit: base.limit, ...filters });
  });
  const form = h("form", { class: "filters", testid: "records-form", onsubmit: apply },
    h("label", {}, "Partition", partSelect),
    h("label", {}, "Start from", h("span", { class: "inline" }, modeSelect, offsetInput, timeInput)),
    h("label", {}, "Key contains", keyInput),
    h("label", {}, "Value contains", valueInput),
    h("label", {}, "Header", headerInput),
    h("label", {}, "Limit", limitSelect),
    h("div", { class: "filter-buttons" },
      h("button", { type: "submit", class: "btn btn-primary", testid: "records-apply" }, "Apply"),
      h("button", { type: "button", class: "btn", testid: "records-newest", onclick: () => go({ offset: pinfo ? Math.max(pinfo.start_offset, pinfo.end_offset - Number(limit)) : null }) }, "Newest"),
      h("button", { type: "button", class: "btn", testid: "records-reset", onclick: () => { location.hash = recordsHref(name, { partition }); } }, "Clear")));

  setMain(
    crumbs(link("#/", "Overview"), link(topicHref(name), name), "records"),
    pageHead(`${name} · records`, pinfo ? `partition ${partition}: offsets ${num(pinfo.start_offset)} to ${num(pinfo.end_offset)} (${num(pinfo.records)} record(s))` : null),
    section(null, form),
  );

  // the page of records
  const params = new URLSearchParams({ partition: String(partition), limit });
  if (query.has("timestamp")) params.set("timestamp", query.get("timestamp"));
  else if (query.has("offset")) params.set("offset", query.get("offset"));
  for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);
  if (query.has("max_scan")) params.set("max_scan", query.get("max_scan"));
  const page = await api(`/api/topics/${enc(name)}/records?${params}`);
  if (!ctx.live()) return;

  const filtered = Boolean(filters.key || filters.value || filters.header);
  const stackKey = JSON.stringify([name, partition, limit, filters]);
  const stack = pageStack.get(stackKey) || [];
  while (stack.length && stack[stack.length - 1] >= page.from_offset) stack.pop();
  pageStack.set(stackKey, stack);
  let prevOffset = page.prev_offset;
  if (prevOffset === null && filtered && stack.length) prevOffset = stack[stack.length - 1];
  const next = () => {
    stack.push(page.from_offset);
    go({ offset: page.next_offset });
  };
  const pager = (where) => h("div", { class: "pager", testid: `pager-${where}` },
    h("button", { type: "button", class: "btn", testid: "pager-prev", disabled: prevOffset === null, onclick: () => go({ offset: prevOffset }) }, "‹ Prev"),
    h("span", { class: "pager-info", testid: "pager-info" },
      page.records.length
        ? `offsets ${num(page.records[0].offset)}–${num(page.records[page.records.length - 1].offset)}`
        : "no records", ` · from ${num(page.from_offset)} · scanned ${num(page.scanned)}`),
    h("button", { type: "button", class: "btn", testid: "pager-next", disabled: page.next_offset === null, onclick: next }, "Next ›"));

  const rows = page.records.map((r) => h("tr", { testid: "record-row", dataset: { offset: r.offset } },
    h("td", { class: "num mono", testid: "record-offset" }, r.offset),
    timeCell(r.timestamp),
    h("td", { class: "cell-key", testid: "record-key" }, payloadNode(r.key)),
    h("td", { class: "cell-value", testid: "record-value" }, payloadNode(r.value)),
    h("td", { class: "cell-headers", testid: "record-headers" }, headersNode(r.headers))));
  const hint = page.scan_limited && page.next_offset !== null
    ? h("div", { class: "hint", testid: "scan-limited" },
      `The filter scanned ${num(page.scanned)} record(s) and stopped before filling the page. `,
      h("a", { href: recordsHref(name, { ...base, offset: page.next_offset, max_scan: query.get("max_scan") }), testid: "scan-continue", onclick: () => stack.push(page.from_offset) },
        `Continue from offset ${num(page.next_offset)}`))
    : null;
  const endNote = page.next_offset === null
    ? h("div", { class: "muted end-note", testid: "records-end" }, `End of partition ${partition} (offset ${num(page.end_offset)}).`) : null;
  main.append(section(null,
    pager("top"),
    hint,
    table("records-table", ["Offset", "Timestamp", "Key", "Value", "Headers"],
      rows.length ? rows : [emptyRow(5, filtered ? "No record matched in the scanned range." : "No records here.")], { class: "table records" }),
    endNote,
    pager("bottom")));
}

// -- groups -----------------------------------------------------------------------------------

async function pageGroups(ctx) {
  const body = h("tbody", {});
  const draw = (g) => {
    const list = g.groups.slice().sort((a, b) => a.name.localeCompare(b.name));
    body.replaceChildren(...(list.length ? list.map((x) => h("tr", { testid: "group-row", dataset: { name: x.name } },
      h("td", {}, link(`#/groups/${enc(x.name)}`, x.name, { class: "strong", testid: "group-link" })),
      h("td", {}, stateBadge(x.state)),
      h("td", { class: "num" }, num(x.members)),
      h("td", { class: "num", testid: "group-lag" }, lagText(x.lag)),
      h("td", {}, x.topics.map((n, i) => [i ? ", " : null, link(topicHref(n), n)])))) : [emptyRow(5, "No consumer groups.")]));
  };
  draw(await api("/api/groups"));
  if (!ctx.live()) return;
  setMain(pageHead("Consumer groups", null),
    store && store.groups_unavailable
      ? h("p", { class: "hint", testid: "groups-unavailable" }, store.groups_unavailable) : null,
    section(null, h("table", { class: "table", testid: "groups-table" },
      h("thead", {}, h("tr", {}, ["Group", "State", "Members", "Lag", "Topics"].map((x) => h("th", { class: thClass(x) }, x)))), body)));
  ctx.ready();
  every(ctx, () => api("/api/groups"), draw);
}

function stateBadge(state) {
  const kind = { Stable: "ok", Empty: "plain", Dead: "bad" }[state] || "warn";
  return badge(state, kind, { testid: "group-state" });
}

function lagText(lag) {
  if (lag === null || lag === undefined) return "—";
  return h("span", { class: lag > 0 ? "lag-pos" : "lag-zero" }, num(lag));
}

async function pageGroup(ctx, name) {
  setMain(crumbs(link("#/groups", "Groups"), name));
  const url = `/api/groups/${enc(name)}`;
  const [g, history] = await Promise.all([api(url), api(`${url}/lag`)]);
  if (!ctx.live()) return;
  const head = h("div", {});
  const membersBody = h("tbody", {});
  const partsBody = h("tbody", {});
  const draw = (x) => {
    head.replaceChildren(pageHead(name,
      h("span", {}, stateBadge(x.state), ` generation ${x.generation} · ${x.members.length} member(s) · total lag `, h("strong", { testid: "group-total-lag" }, num(x.lag))),
      writeButton("Reset offsets…", "reset-offsets", resetOffsets, "btn-warn"),
      writeButton("Delete group", "delete-group", deleteGroup)));
    membersBody.replaceChildren(...(x.members.length ? x.members.map((m) => h("tr", { testid: "member-row" },
      h("td", { class: "mono" }, m.member_id),
      h("td", {}, m.partitions.length ? m.partitions.map((p, i) => [i ? ", " : null, h("span", { class: "mono" }, `${p.topic}-${p.partition}`)]) : h("span", { class: "muted" }, "none"))))
      : [emptyRow(2, "No live members.")]));
    partsBody.replaceChildren(...x.partitions.map((p) => h("tr", { testid: "group-partition-row", dataset: { topic: p.topic, partition: p.partition } },
      h("td", {}, link(topicHref(p.topic), p.topic)),
      h("td", { class: "num" }, p.partition),
      h("td", { class: "num mono", testid: "committed" }, p.committed === null ? h("span", { class: "muted" }, "none") : link(recordsHref(p.topic, { partition: p.partition, offset: p.committed }), num(p.committed))),
      h("td", { class: "num mono" }, num(p.end_offset)),
      h("td", { class: "num", testid: "lag" }, lagText(p.lag)),
      h("td", { class: "mono" }, p.member || h("span", { class: "muted" }, "—")))));
  };
  const topics = [...new Set(g.partitions.map((p) => p.topic))].sort();
  const resetOffsets = () => {
    const to = h("select", { testid: "reset-to" }, ["earliest", "latest", "offset", "timestamp"].map((v) => h("option", { value: v }, v)));
    const value = h("input", { type: "number", testid: "reset-value", placeholder: "offset", hidden: true });
    const when = h("input", { type: "datetime-local", step: "1", testid: "reset-time", hidden: true, value: localInputValue(Date.now() - 3600_000) });
    to.addEventListener("change", () => {
      value.hidden = to.value !== "offset";
      when.hidden = to.value !== "timestamp";
    });
    const boxes = topics.map((n) => h("input", { type: "checkbox", value: n, checked: true }));
    const form = h("div", { class: "form-grid" },
      h("label", {}, "Reset to", to), h("label", {}, "Value", h("span", { class: "inline" }, value, when)),
      h("div", {}, h("div", { class: "label" }, "Topics"), topics.map((n, i) => h("label", { class: "check" }, boxes[i], " ", n))));
    confirmDialog(`Reset the offsets of ${name}`, form, { confirmLabel: "Preview" }).then((ok) => {
      if (!ok) return;
      const body = { to: to.value, topics: boxes.filter((b) => b.checked).map((b) => b.value) };
      if (to.value === "offset") body.value = Number(value.value || 0);
      if (to.value === "timestamp") body.value = new Date(when.value).getTime();
      twoStep({
        title: `Reset the offsets of ${name}?`,
        url: `${url}/reset-offsets`,
        body,
        confirmLabel: "Reset offsets",
        describe: (p) => ({
          canConfirm: p.offsets.length > 0,
          node: p.offsets.length ? table("reset-preview", ["Topic", "Partition", "From", "To"], p.offsets.map((o) => h("tr", {},
            h("td", {}, o.topic), h("td", { class: "num" }, o.partition), h("td", { class: "num mono" }, num(o.from)), h("td", { class: "num mono" }, num(o.to)))))
            : h("p", {}, "Nothing to reset."),
        }),
        done: (r) => `Reset ${r.offsets.length} offset(s) of group '${name}'.`,
      }).then((r) => {
        if (r && ctx.live()) api(url).then(draw, showError);
      });
    });
  };
  const deleteGroup = () => twoStep({
    title: `Delete group ${name}?`,
    url: `${url}/delete`,
    body: {},
    confirmLabel: "Delete group",
    describe: () => ({ canConfirm: true, node: h("p", {}, "This deletes consumer group ", h("strong", {}, name), " and its committed offsets.") }),
    done: () => `Deleted group '${name}'.`,
  }).then((r) => {
    if (r && ctx.live()) location.hash = "#/groups";
  });
  draw(g);
  const chartBox = h("div", { class: "chart", testid: "lag-chart", dataset: { points: "0", latestTotal: "" } });
  const legendNote = h("div", { class: "chart-note", testid: "lag-chart-note" });
  setMain(
    crumbs(link("#/groups", "Groups"), name),
    head,
    store && !store.allow_writes ? h("div", { class: "note-line" }, writesNote()) : null,
    section(h("span", {}, "Lag over time ", h("span", { class: "live-dot", title: "live" }), h("span", { class: "muted small" }, " live")), chartBox, legendNote),
    h("div", { class: "two-col" },
      section("Offsets", h("table", { class: "table", testid: "group-partitions-table" },
        h("thead", {}, h("tr", {}, ["Topic", "Partition", "Committed", "Log end", "Lag", "Member"].map((x) => h("th", { class: thClass(x) }, x)))), partsBody)),
      section("Members and assignment", h("table", { class: "table", testid: "members-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Member"), h("th", {}, "Partitions"))), membersBody))),
  );
  startLagChart(ctx, chartBox, legendNote, history, `${url}/lag/stream`);
  every(ctx, () => api(url), draw);
}

// The live lag chart: the history as columns (times, one lag column per partition, total),
// then one sample per server-sent event appended.
function startLagChart(ctx, box, note, history, streamUrl) {
  const keyOf = (s) => `${s.topic}-${s.partition}`;
  let keys = history.series.map(keyOf);
  const times = history.times.slice();
  const cols = history.series.map((s) => s.lag.slice());
  const total = history.total.slice();
  let chart = null;

  const publish = () => {
    box.dataset.points = String(times.length);
    const last = total.length ? total[total.length - 1] : null;
    box.dataset.latestTotal = last === null || last === undefined ? "" : String(last);
    note.textContent = times.length
      ? `${times.length} sample(s) every ${history.interval_s} s · latest total lag ${num(last)}`
      : `Waiting for the first sample (every ${history.interval_s} s)…`;
  };
  const data = () => [times, ...cols, total];
  const build = () => {
    if (chart) chart.destroy();
    const width = Math.max(320, box.clientWidth || 800);
    const series = [{}, ...keys.map((k, i) => ({ label: k, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false })),
      { label: "total", stroke: "#111827", width: 2.5, dash: [6, 3] }];
    chart = new window.uPlot({
      width, height: 260, series,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] } },
      axes: [{ stroke: "#6b7280", grid: { stroke: "#eef0f3" } }, { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, size: 60, values: (u, vals) => vals.map((v) => num(v)) }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    }, data(), box);
  };
  if (typeof window.uPlot !== "function") {
    box.append(h("p", { class: "muted" }, "The chart library did not load."));
  } else {
    build();
  }
  publish();
  const resize = () => {
    if (chart) chart.setSize({ width: Math.max(320, box.clientWidth), height: 260 });
  };
  window.addEventListener("resize", resize);
  onLeave(() => window.removeEventListener("resize", resize));
  onLeave(() => {
    if (chart) chart.destroy();
    chart = null;
  });

  const es = new EventSource(streamUrl);
  openStreams += 1;
  document.body.dataset.openStreams = String(openStreams);
  box.dataset.stream = "connecting";
  onLeave(() => {
    es.close();
    openStreams -= 1;
    document.body.dataset.openStreams = String(openStreams);
  });
  es.addEventListener("open", () => { box.dataset.stream = "open"; });
  es.addEventListener("error", () => { box.dataset.stream = es.readyState === EventSource.CLOSED ? "closed" : "reconnecting"; });
  es.addEventListener("lag", (ev) => {
    if (!ctx.live()) return;
    let s;
    try {
      s = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (times.length && s.time <= times[times.length - 1]) return; // the stream starts with the latest sample
    let rebuild = false;
    for (const p of s.partitions) {
      if (!keys.includes(keyOf(p))) {
        keys = [...keys, keyOf(p)];
        cols.push(times.map(() => null));
        rebuild = true;
      }
    }
    const byKey = new Map(s.partitions.map((p) => [keyOf(p), p.lag]));
    times.push(s.time);
    keys.forEach((k, i) => cols[i].push(byKey.has(k) ? byKey.get(k) : null));
    total.push(s.total);
    if (times.length > CHART_POINTS) {
      times.shift();
      total.shift();
      for (const c of cols) c.shift();
    }
    if (chart && !rebuild) chart.setData(data());
    else if (typeof window.uPlot === "function") build();
    publish();
  });
}

// -- dead letters -----------------------------------------------------------------------------

async function pageDlqList(ctx) {
  const d = await api("/api/dead-letters");
  if (!ctx.live()) return;
  const list = d.topics.slice().sort((a, b) => a.name.localeCompare(b.name));
  setMain(pageHead("Dead letters", "Records a consumer gave up on, with where they came from and why."),
    section(null, table("dlq-table", ["Topic", "Dead letters", "Pending", "Re-driven", ""], list.length ? list.map((x) => h("tr", { testid: "dlq-row", dataset: { name: x.name } },
      h("td", {}, link(`#/dlq/${enc(x.name)}`, x.name, { class: "strong", testid: "dlq-link" })),
      h("td", { class: "num" }, num(x.records)),
      h("td", { class: "num", testid: "dlq-pending" }, x.pending > 0 ? h("span", { class: "lag-pos" }, num(x.pending)) : num(x.pending)),
      h("td", { class: "num", testid: "dlq-redriven" }, num(x.redriven)),
      h("td", { class: "row-actions" }, link(recordsHref(x.name), "Browse", { class: "btn btn-small" }))))
      : [emptyRow(5, "No dead-letter topics.")])));
}

async function pageDlq(ctx, name, query) {
  setMain(crumbs(link("#/dlq", "Dead letters"), name));
  const cursor = query.get("cursor") || "";
  const q = new URLSearchParams({ limit: "50" });
  if (cursor) q.set("cursor", cursor);
  const [d, info] = await Promise.all([api(`/api/topics/${enc(name)}/dead-letters?${q}`), api("/api/dead-letters")]);
  if (!ctx.live()) return;
  const summary = info.topics.find((x) => x.name === name);
  const checks = [];
  const selectedIds = () => checks.filter((c) => c.checked).map((c) => c.value);
  const selectedBtn = writeButton("Re-drive selected", "redrive-selected", () => redrive({ letters: selectedIds() }), "btn-primary");
  const allBtn = writeButton(`Re-drive all pending${summary ? ` (${num(summary.pending)})` : ""}`, "redrive-all", () => redrive({ all: true }), "btn-warn");
  const syncSelected = () => {
    const n = selectedIds().length;
    selectedBtn.textContent = n ? `Re-drive selected (${n})` : "Re-drive selected";
    if (store && store.allow_writes) selectedBtn.disabled = n === 0;
  };
  const redrive = (body) => twoStep({
    title: `Re-drive dead letters of ${name}?`,
    url: `/api/topics/${enc(name)}/dead-letters/redrive`,
    body,
    confirmLabel: "Re-drive",
    describe: (p) => ({
      canConfirm: p.count > 0,
      node: h("div", { testid: "redrive-preview" },
        p.count > 0 ? h("p", {}, `Send ${p.count} dead letter(s) back to:`) : h("p", {}, "Nothing to re-drive."),
        p.count > 0 ? table("redrive-routes", ["Topic", "Count"], Object.entries(p.routes).map(([t, n]) => h("tr", {}, h("td", {}, t), h("td", { class: "num" }, num(n))))) : null,
        p.skipped && p.skipped.length ? h("p", { class: "muted" }, `Already re-driven, skipped: ${p.skipped.join(", ")}`) : null),
    }),
    done: (r) => `Re-drove ${r.count} dead letter(s) of '${name}'${Object.keys(r.routes).length ? ` to ${Object.entries(r.routes).map(([t, n]) => `${t} (${n})`).join(", ")}` : ""}${r.skipped && r.skipped.length ? `; skipped ${r.skipped.length} already re-driven` : ""}.`,
  }).then(async (r) => {
    if (r && ctx.live()) {
      const message = resultBanner.querySelector(".banner-text").textContent;
      await render();
      showResult(message);
    }
  });
  const allBox = h("input", { type: "checkbox", testid: "select-all", title: "select every pending letter on this page" });
  allBox.addEventListener("change", () => {
    for (const c of checks) if (!c.disabled) c.checked = allBox.checked;
    syncSelected();
  });
  const rows = d.letters.map((x) => {
    const box = h("input", { type: "checkbox", value: x.id, testid: "letter-check", disabled: x.redriven || null });
    box.addEventListener("change", syncSelected);
    checks.push(box);
    const o = x.original;
    return h("tr", { testid: "letter-row", dataset: { id: x.id, redriven: String(x.redriven) }, class: x.redriven ? "row-dim" : null },
      h("td", { class: "check" }, box),
      h("td", { class: "mono nowrap" }, x.id),
      timeCell(x.timestamp),
      h("td", { class: "mono nowrap", testid: "letter-original" }, o && o.topic
        ? link(recordsHref(o.topic, { partition: o.partition, offset: o.offset }), `${o.topic}-${o.partition}@${o.offset}`)
        : h("span", { class: "muted" }, "unknown")),
      h("td", { class: "num" }, num(x.attempts)),
      h("td", { class: "cell-error", testid: "letter-error" }, x.error_class ? h("strong", {}, x.error_class) : null, x.error_message ? [": ", h("span", { title: x.error_message }, x.error_message.length > 120 ? `${x.error_message.slice(0, 120)}…` : x.error_message)] : null),
      h("td", { testid: "letter-key" }, payloadPreview(x.key, 40)),
      h("td", { testid: "letter-value" }, payloadPreview(x.value, 60)),
      h("td", { testid: "letter-redriven" }, x.redriven ? badge("re-driven", "ok") : badge("pending", "warn")));
  });
  syncSelected();
  const pagerEl = h("div", { class: "pager", testid: "dlq-pager" },
    h("button", { type: "button", class: "btn", testid: "pager-prev", disabled: !cursor, onclick: () => history.back() }, "‹ Prev"),
    h("span", { class: "pager-info" }, `${d.letters.length} letter(s) on this page`),
    h("button", { type: "button", class: "btn", testid: "pager-next", disabled: !d.next_cursor, onclick: () => { location.hash = `#/dlq/${enc(name)}?cursor=${enc(d.next_cursor)}`; } }, "Next ›"));
  setMain(
    crumbs(link("#/dlq", "Dead letters"), name),
    pageHead(name, summary ? h("span", { testid: "dlq-summary" }, `${num(summary.records)} dead letter(s) · ${num(summary.pending)} pending · ${num(summary.redriven)} re-driven`) : null,
      link(topicHref(name), "Topic", { class: "btn" }), link(recordsHref(name), "Browse records", { class: "btn" })),
    section(null,
      h("div", { class: "toolbar", testid: "dlq-toolbar" }, selectedBtn, allBtn, store && !store.allow_writes ? writesNote() : null),
      table("letters-table", [h("th", { class: "check" }, allBox), "Letter", "Dead-lettered", "Original", "Attempts", "Error", "Key", "Value", "State"],
        rows.length ? rows : [emptyRow(9, "No dead letters in this topic.")], { class: "table letters" }),
      pagerEl),
  );
}

// -- the API's endpoints ----------------------------------------------------------------------

async function pageApi(ctx) {
  const doc = await api("/openapi.json");
  if (!ctx.live()) return;
  const rows = [];
  for (const [path, ops] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(ops)) {
      if (!["get", "post", "put", "delete", "patch"].includes(method)) continue;
      const params = (op.parameters || []).map((p) => `${p.name}${p.in === "query" ? "" : ` (${p.in})`}${p.required ? "" : "?"}`);
      if (op.requestBody) params.push("JSON body");
      const about = (op.description || "").split(/\n\s*\n/)[0].replace(/\s+/g, " ").trim();
      rows.push(h("tr", { testid: "endpoint-row", dataset: { method: method.toUpperCase(), path } },
        h("td", {}, badge(method.toUpperCase(), method === "get" ? "info" : "warn")),
        h("td", { class: "mono" }, method === "get" && !path.includes("{") ? link(path, path, { target: "_blank", rel: "noopener" }) : path),
        h("td", {}, h("div", { class: "strong" }, op.summary || ""), about ? h("div", { class: "muted small" }, about) : null),
        h("td", { class: "mono small" }, params.join(", ") || h("span", { class: "muted" }, "—"))));
    }
  }
  setMain(pageHead("JSON API", h("span", {}, `${doc.info ? `${doc.info.title} ${doc.info.version}` : ""} · the OpenAPI document: `, link("/openapi.json", "/openapi.json", { target: "_blank" }))),
    section(null, h("p", { class: "muted" }, "Every page of this console is drawn from these endpoints; scripts can use them too (curl, httpx). Writes need ", h("code", {}, "--allow-writes"), " and a second POST with ", h("code", {}, '"confirm": true'), "."),
      table("api-table", ["Method", "Path", "Summary", "Parameters"], rows)));
}

function pageNotFound(ctx, hash) {
  setMain(pageHead("Not found", null), h("p", { testid: "page-error" }, `No page at ${hash}. `, link("#/", "Back to the overview")));
  main.dataset.error = "not_found";
}

// -- start ------------------------------------------------------------------------------------

window.addEventListener("hashchange", () => {
  clearBanners();
  render();
});

(async () => {
  try {
    store = await api("/api/store");
    drawStoreInfo();
  } catch (err) {
    showError(err);
  }
  render();
})();
