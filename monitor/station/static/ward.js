// The ward view: a grid of every bed (worst unanswered alarm first), the clinical alarm list,
// technical alarms apart, and the audit log split into staff actions and system entries.
// Live over server-sent events (/api/stream): the ward once, then only what changed.
//
// Everything on the page is keyed and updated in place: a tile, a row or a chart is made
// once and changed after, so a screen left on for a shift neither leaks nor loses focus.
// If no event arrives for NO_DATA_S (or the server says it is stopping), the page says so
// across its full width, greys every value, keeps counting ages and sounds a technical alarm.
// When some beds cannot be shown (a cluster worker not answering), a banner says so.
"use strict";

const NO_DATA_S = 5;
const UNDO_S = 5;
const REASONS = ["", "Assessed at the bedside", "Treated", "Artifact or sensor problem",
                 "Expected for this patient"];
const SNOOZE_MIN = [5, 10, 15, 30, 60];

const state = {
  beds: new Map(), order: [], offset: 0, lastMsg: 0, lastNow: 0, stopping: false, missingSince: 0,
  sparks: {}, ward: "", es: null, seen: new Map(),
};
const tiles = new Map();   // bed key -> {el, parts, chart}
const rows = new Map();    // alarm id -> {tr, cells, sig, actionsSig}
const ui = new Map();      // alarm id -> "ack" | "snooze" | {pending: timer, until}

const serverNow = () => Date.now() / 1000 + state.offset;

// -- sound: a pattern per priority, repeated while unanswered; pausable for 2 min ----------
const audio = {
  ctx: null, pausedUntil: 0, lastPlayed: { high: 0, medium: 0, low: 0, nodata: 0 },
  REPEAT_S: { high: 10, medium: 20, low: Infinity, nodata: 10 },
  PATTERN: { high: [880, 5, 0.12], medium: [660, 3, 0.18], low: [440, 2, 0.25],
             nodata: [330, 2, 0.4] },
  enable() {
    this.ctx = this.ctx || new AudioContext();
    this.ctx.resume();
    document.getElementById("audio-off").hidden = true;
  },
  play(kind) {
    if (!this.ctx || this.ctx.state !== "running" || Date.now() < this.pausedUntil) return;
    const [freq, pulses, len] = this.PATTERN[kind];
    const t0 = this.ctx.currentTime;
    for (let i = 0; i < pulses; i++) {
      const osc = this.ctx.createOscillator();
      const gain = this.ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.value = 0.2;
      osc.connect(gain).connect(this.ctx.destination);
      osc.start(t0 + i * len * 1.6);
      osc.stop(t0 + i * len * 1.6 + len);
    }
    this.lastPlayed[kind] = Date.now();
  },
  due(kind) { return Date.now() - this.lastPlayed[kind] >= this.REPEAT_S[kind] * 1000; },
  tick(alarms, fresh) {
    // the most urgent unanswered priority sounds; a new alarm sounds at once
    const loud = alarms.filter((a) => (a.state === "firing" || a.state === "escalated") &&
                                      !(ui.get(a.id) || {}).pending);
    const top = loud.sort((a, b) => ww.RANK[b.priority] - ww.RANK[a.priority])[0];
    if (!top) return;
    if (fresh.some((a) => a.priority === top.priority) || this.due(top.priority)) {
      this.play(top.priority);
    }
  },
};

function pauseAudio() {
  audio.pausedUntil = Date.now() + 120_000;
  updatePause();
}
function updatePause() {
  const btn = document.getElementById("pause");
  const left = Math.ceil((audio.pausedUntil - Date.now()) / 1000);
  const text = left > 0 ? `Audio paused ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`
                        : "Pause audio 2 min";
  if (btn.textContent !== text) btn.textContent = text;
  btn.setAttribute("aria-pressed", String(left > 0));
}

// -- merging the stream ------------------------------------------------------------------
function applySnapshot(msg) {
  state.beds = new Map(msg.beds.map((b) => [b.key, b]));
  state.order = msg.order;
}
function applyDelta(msg) {
  for (const d of msg.beds || []) {
    const old = state.beds.get(d.key);
    if (!old || d.ward !== undefined) { state.beds.set(d.key, d); continue; }
    if (d.vitals) old.vitals = { ...old.vitals, ...d.vitals };
    for (const f of ["alarms", "priority", "open_priority", "rank"]) if (f in d) old[f] = d[f];
  }
  for (const k of msg.gone || []) state.beds.delete(k);
  if (msg.order) state.order = msg.order;
}
function alive(msg) {
  state.lastMsg = Date.now();
  state.lastNow = msg.now;
  state.offset = msg.now - Date.now() / 1000;
  state.stopping = false;
  const conn = document.getElementById("conn");
  conn.textContent = `live ${ww.clock(msg.now)}`;
  conn.className = "conn live";
  // a cluster worker that cannot show every bed says so in every event until it can
  const missing = document.getElementById("missing");
  const text = msg.missing || "";
  if (missing.textContent !== text) missing.textContent = text;
  missing.hidden = !text;
  state.missingSince = text ? state.missingSince || Date.now() : 0;
}

// -- no data: loud, not a footnote -------------------------------------------------------
function watchdog() {
  const quiet = state.lastMsg && (Date.now() - state.lastMsg > NO_DATA_S * 1000);
  const down = state.stopping || quiet || !state.lastMsg && performance.now() > NO_DATA_S * 1000;
  const banner = document.getElementById("nodata");
  document.body.classList.toggle("no-data", Boolean(down));
  if (down) {
    const since = state.lastNow ? ww.clock(state.lastNow) : "this page opened";
    const why = state.stopping ? " — wardwatch is stopping" : " — the values below are old";
    const text = `NO DATA since ${since}${why}`;
    if (banner.textContent !== text) banner.textContent = text;
    banner.hidden = false;
    if (audio.due("nodata")) audio.play("nodata");
  } else {
    banner.hidden = true;
    // beds not shown for longer than a hand-over takes: heard, like no data
    if (state.missingSince && Date.now() - state.missingSince > NO_DATA_S * 1000
        && audio.due("nodata")) audio.play("nodata");
  }
  tickAges();
  updatePause();
}

function tickAges() {
  const now = serverNow();
  for (const e of document.querySelectorAll("[data-seen]")) {
    const text = (e.dataset.prefix || "") + ww.ago(now - Number(e.dataset.seen));
    if (e.textContent !== text) e.textContent = text;
  }
}

// -- the bed grid ------------------------------------------------------------------------
const VITALS = [["hr", "HR"], ["bp", "BP"], ["glucose", "Gluc"]];

function makeTile(key) {
  const [ward, bed] = key.split("/");
  const parts = { name: ww.el("span", { class: "bed", text: key }), badge: ww.el("span") };
  const el = ww.el("a", { class: "tile", "data-bed": key,
                          href: `/bed?ward=${encodeURIComponent(ward)}&bed=${encodeURIComponent(bed)}` },
    ww.el("div", { class: "head" }, parts.name, parts.badge));
  for (const [k, label] of VITALS) {
    const row = { el: ww.el("div", { class: "vital", "data-vital": k, hidden: "" }),
                  val: ww.el("span", { class: "val" }), num: ww.el("span", { class: "num" }),
                  unit: ww.el("span", { class: "unit" }), age: ww.el("span", { class: "age" }) };
    row.val.append(row.num, row.unit);
    row.el.append(ww.el("span", { class: "name", text: label }), row.val, row.age);
    parts[k] = row;
    el.append(row.el);
  }
  parts.spark = ww.el("div", { class: "spark", "aria-hidden": "true" });
  parts.line = ww.el("div", { class: "alarm-line" });
  el.append(parts.spark, parts.line);
  const tile = { el, parts, chart: null, sig: "" };
  tiles.set(key, tile);
  return tile;
}

function setText(e, text) { if (e.textContent !== text) e.textContent = text; }
function setClass(e, cls) { if (e.className !== cls) e.className = cls; }

function vitalView(bed, key) {
  // a number and its unit; blood pressure as systolic/diastolic (the mean: bed page, alarms)
  const v = bed.vitals;
  if (key === "bp") {
    const s = v.sbp, d = v.dbp, m = v.map;
    if (!s && !d && !m) return null;
    const n = (x) => (x && x.value != null ? ww.num(x.value) : "—");
    const x = s && s.band_priority ? s : m && m.band_priority ? m : s || m || d;
    return { num: `${n(s)}/${n(d)}`, unit: (s || d || m).unit, x,
             stale: [s, d, m].some((y) => y && y.stale) };
  }
  const x = v[key];
  if (!x) return null;
  const [num, ...unit] = x.text.split(" ");
  return { num, unit: unit.join(" "), x, stale: x.stale };
}

function updateTile(tile, bed) {
  const p = tile.parts;
  const open = bed.open_priority;
  // unanswered: solid, in the priority's colour; answered: dashed; technical only: grey
  const clinical = bed.alarms.filter((a) => !a.technical);
  const answered = !open && clinical.length ? ` answered ${clinical[0].priority}` : "";
  const inop = !open && !clinical.length && bed.alarms.length ? " inop" : "";
  setClass(tile.el, `tile${open ? " " + open : ""}${answered}${inop}`);
  const label = `Bed ${bed.key}` + (open ? `, unanswered ${open} priority alarm`
    : answered ? ", alarms answered" : inop ? ", technical alarm" : "");
  if (tile.el.getAttribute("aria-label") !== label) tile.el.setAttribute("aria-label", label);
  const badge = open ? ww.PRIORITY_TEXT[open] : "";
  if (p.badge.textContent !== badge) p.badge.replaceChildren(...(open ? [ww.badge(open)] : []));
  for (const [k] of VITALS) {
    const row = p[k];
    const view = vitalView(bed, k);
    if (!view) { row.el.hidden = true; continue; }
    row.el.hidden = false;
    const x = view.x;
    setText(row.num, view.num);
    setText(row.unit, ` ${view.unit}`);
    setClass(row.val, `val${x.band_priority ? " b-" + x.band_priority : ""}`);
    if (row.val.title !== (x.band_label || "")) row.val.title = x.band_label || "";
    setClass(row.el, `vital${view.stale ? " stale" : ""}`);
    row.age.dataset.seen = String(x.seen);
    row.age.dataset.prefix = view.stale ? "STALE " : "";
  }
  const worst = bed.alarms.find((a) => !a.technical) || bed.alarms[0];
  setText(p.line, worst ? worst.condition + (worst.state === "acknowledged" ? " (answered)" : "") : "");
}

function drawSpark(tile, key) {
  const series = (state.sparks[key] || {}).hr;
  if (!series || series.length < 2 || typeof uPlot === "undefined") return;
  const data = [series.map((p) => p[0]), series.map((p) => p[1])];
  if (tile.chart) { tile.chart.setData(data); return; }
  tile.chart = new uPlot({
    width: 150, height: 16, cursor: { show: false }, legend: { show: false },
    axes: [{ show: false }, { show: false }], scales: { x: { time: true } },
    series: [{}, { stroke: "#9aa7b4", width: 1.5, points: { show: false } }],
  }, data, tile.parts.spark);
}

function renderGrid() {
  const grid = document.getElementById("grid");
  const keys = state.order.filter((k) => state.beds.has(k) && !k.startsWith("_system/"));
  for (const [key, tile] of tiles) {
    if (!state.beds.has(key) || key.startsWith("_system/")) {
      if (tile.chart) tile.chart.destroy();
      tile.el.remove();
      tiles.delete(key);
    }
  }
  keys.forEach((key, i) => {
    const tile = tiles.get(key) || makeTile(key);
    updateTile(tile, state.beds.get(key));
    if (!tile.chart) drawSpark(tile, key);
    if (grid.children[i] !== tile.el) grid.insertBefore(tile.el, grid.children[i] || null);
  });
  const open = keys.filter((k) => state.beds.get(k).open_priority).length;
  setText(document.getElementById("bed-count"),
          `(${keys.length}${open ? `, ${open} with unanswered alarms` : ""})`);
}

// -- the alarm lists -----------------------------------------------------------------------
function byRank(a, b) {  // the server's sort key (monitor/station/view.py alarm_view)
  for (let i = 0; i < a.rank.length; i++) if (a.rank[i] !== b.rank[i]) return a.rank[i] < b.rank[i] ? -1 : 1;
  return 0;
}

function stateText(a) {
  const pending = (ui.get(a.id) || {}).pending;
  if (pending) return "acknowledging…";
  if (a.state === "acknowledged" && a.ack_action === "snooze") {
    return `snoozed by ${a.acked_by} until ${ww.clock(a.snooze_until)}`;
  }
  if (a.state === "acknowledged") {
    return `acknowledged by ${a.acked_by}` +
      (a.snooze_until ? ` (sounds again ${ww.clock(a.snooze_until)} if it persists)` : "");
  }
  return a.state + (a.latched ? " (latched: condition cleared)" : "");
}

function nowCell(a, cell) {
  if (a.code.endsWith(".stale")) {
    const x = (state.beds.get(`${a.ward}/${a.bed}`) || { vitals: {} }).vitals[a.metric];
    if (x) { cell.dataset.seen = String(x.seen); cell.dataset.prefix = "no data for "; return; }
  }
  delete cell.dataset.seen;
  setText(cell, a.now_text || "—");
}

function makeRow(a) {
  const cells = { prio: ww.el("td"), bed: ww.el("td"), cond: ww.el("td"), now: ww.el("td"),
                  age: ww.el("td"), state: ww.el("td", { class: "state" }),
                  actions: ww.el("td", { class: "actions" }) };
  cells.words = ww.el("div", { class: "words" });
  cells.cond.append(cells.words);
  const tr = ww.el("tr", { "data-alarm": a.id, "data-ward": a.ward, "data-bed": a.bed,
                           tabindex: "-1" }, ...Object.values(cells).filter((c) => c.tagName === "TD"));
  const row = { tr, cells, sig: "", actionsSig: "" };
  rows.set(a.id, row);
  return row;
}

function updateRow(row, a) {
  const c = row.cells;
  const sig = JSON.stringify([a.priority, a.state, a.words, a.latched, a.acked_by, a.snooze_until,
                              a.escalated]);
  if (sig !== row.sig) {
    row.sig = sig;
    setClass(row.tr, `${a.priority} ${a.state}${a.escalated ? " escalated" : ""}`);
    c.prio.replaceChildren(ww.badge(a.priority));
    setText(c.bed, a.ward === "_system" ? `system (${a.bed})` : `${a.ward}/${a.bed}`);
    setText(c.words, a.words || a.message);
  }
  nowCell(a, c.now);
  c.age.dataset.seen = String(a.since);
  setText(c.state, stateText(a));
  renderActions(row, a);
}

function button(text, attrs) { return ww.el("button", { type: "button", ...attrs, text }); }

function renderActions(row, a) {
  const mode = ui.get(a.id);
  const may = ww.me && ww.me.may_ack && a.state !== "acknowledged";
  const sig = JSON.stringify([may, mode && (mode.pending ? "pending" : mode)]);
  if (sig === row.actionsSig) return;
  const hadFocus = row.tr.contains(document.activeElement);
  row.actionsSig = sig;
  const what = `${a.condition || a.code} on bed ${a.ward}/${a.bed}`;
  const parts = [];
  if (may && !mode) {
    parts.push(button("Acknowledge…", { class: "ack", "data-do": "ack-form",
                                        "aria-label": `Acknowledge ${what}` }),
               button("Snooze…", { class: "snooze", "data-do": "snooze-form",
                                   "aria-label": `Snooze ${what}` }));
  } else if (may && mode === "ack") {
    const select = ww.el("select", { class: "reason", "aria-label": "Reason (optional)" },
      ...REASONS.map((r) => ww.el("option", { value: r, text: r || "Reason (optional)" })));
    parts.push(select, button("Confirm", { class: "ack", "data-do": "ack-confirm" }),
               button("Cancel", { "data-do": "cancel" }));
  } else if (may && mode === "snooze") {
    const max = (ww.me.snooze_max_s || 3600) / 60;
    for (const m of SNOOZE_MIN.filter((m) => m <= max)) {
      parts.push(button(`${m} min`, { class: "snooze", "data-do": "snooze", "data-min": String(m),
                                      "aria-label": `Snooze ${what} for ${m} minutes` }));
    }
    parts.push(button("Cancel", { "data-do": "cancel" }));
  } else if (mode && mode.pending) {
    parts.push(button(`Undo (${UNDO_S} s)`, { class: "undo", "data-do": "undo",
                                              "aria-label": `Undo acknowledging ${what}` }));
  }
  row.cells.actions.replaceChildren(...parts);
  if (hadFocus) (row.cells.actions.querySelector("select, button") || row.tr).focus();
}

function renderList(tbodyId, list, emptyId, countId) {
  const tbody = document.getElementById(tbodyId);
  list.forEach((a, i) => {
    const row = rows.get(a.id) || makeRow(a);
    updateRow(row, a);
    if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
  });
  while (tbody.children.length > list.length) {
    const last = tbody.lastElementChild;
    rows.delete(last.dataset.alarm);
    last.remove();
  }
  document.getElementById(emptyId).hidden = list.length > 0;
  const open = list.filter((a) => a.state !== "acknowledged").length;
  setText(document.getElementById(countId),
          list.length ? `(${open} unanswered of ${list.length})` : "");
}

function renderAlarms() {
  const all = [...state.beds.values()].flatMap((b) => b.alarms).sort(byRank);
  const ids = new Set(all.map((a) => a.id));
  for (const [id, row] of rows) if (!ids.has(id)) { row.tr.remove(); rows.delete(id); }
  for (const id of ui.keys()) if (!ids.has(id)) ui.delete(id);
  renderList("alarm-rows", all.filter((a) => !a.technical), "no-alarms", "alarm-count");
  renderList("inop-rows", all.filter((a) => a.technical), "no-inop", "inop-count");
  // new or re-sounding alarms: announce and sound
  const fresh = [];
  const now = serverNow();
  for (const a of all) {
    const key = `${a.id}:${a.state}`;
    if (!state.seen.has(key) && (a.state === "firing" || a.state === "escalated")) fresh.push(a);
    state.seen.set(key, now);
  }
  for (const [k, t] of state.seen) if (now - t > 3600) state.seen.delete(k);
  if (fresh.length) {
    setText(document.getElementById("announce"), fresh
      .map((a) => `${a.priority} priority alarm, bed ${a.ward}/${a.bed}: ${a.words || a.message}`)
      .join(". "));
  }
  audio.tick(all, fresh);
}

// -- actions: acknowledge with a reason and an undo; snooze for a chosen time -------------
function findAlarm(id) {
  for (const b of state.beds.values()) for (const a of b.alarms) if (a.id === id) return a;
  return null;
}

async function send(a, body) {
  try {
    await ww.post("/api/ack", { ward: a.ward, bed: a.bed, id: a.id, ...body });
    refreshAudit();
  } catch (e) {
    setText(document.getElementById("announce"), `Could not ${body.action}: ${e.message}`);
  }
}

function onAction(ev) {
  const btn = ev.target.closest("button[data-do]");
  if (!btn) return;
  const tr = btn.closest("tr");
  const a = findAlarm(tr.dataset.alarm);
  if (!a) return;
  const what = btn.dataset.do;
  if (what === "ack-form") ui.set(a.id, "ack");
  else if (what === "snooze-form") ui.set(a.id, "snooze");
  else if (what === "cancel") ui.delete(a.id);
  else if (what === "ack-confirm") {
    const reason = tr.querySelector("select.reason").value;
    const timer = setTimeout(() => {
      ui.delete(a.id);
      send(a, { action: "ack", ...(reason ? { reason } : {}) });
      tr.focus();
    }, UNDO_S * 1000);
    ui.set(a.id, { pending: timer, until: Date.now() + UNDO_S * 1000 });
  } else if (what === "undo") {
    clearTimeout(ui.get(a.id).pending);
    ui.delete(a.id);
  } else if (what === "snooze") {
    ui.delete(a.id);
    send(a, { action: "snooze", snooze_s: Number(btn.dataset.min) * 60 });
  }
  const row = rows.get(a.id);
  if (row) updateRow(row, a);
}

function tickUndo() {
  for (const [id, mode] of ui) {
    if (!mode.pending) continue;
    const row = rows.get(id);
    const undo = row && row.cells.actions.querySelector("button.undo");
    if (undo) setText(undo, `Undo (${Math.max(0, Math.ceil((mode.until - Date.now()) / 1000))} s)`);
  }
}

// -- audit: staff actions apart from system entries --------------------------------------
const auditSig = { people: "", system: "" };
async function refreshAudit() {
  const ward = state.ward ? `&ward=${encodeURIComponent(state.ward)}` : "";
  for (const [who, tbody] of [["people", "audit-rows"], ["system", "system-rows"]]) {
    const r = await fetch(`/api/audit?limit=20&who=${who}${ward}`, { credentials: "same-origin" });
    if (!r.ok) continue;
    const entries = await r.json();
    const sig = entries.map((e) => e.seq).join(",");
    if (sig === auditSig[who]) continue;
    auditSig[who] = sig;
    document.getElementById(tbody).replaceChildren(...entries.map((e) => {
      const cells = [ww.el("td", { text: ww.clock(e.clock) }),
                     ww.el("td", { text: `${e.ward}/${e.bed}` }),
                     ww.el("td", { text: e.code || e.alarm_id || "—" }),
                     ww.el("td", { text: e.action })];
      if (who === "people") {
        cells.push(ww.el("td", { text: e.by, title: e.client ? `sent through ${e.client}` : "" },
          e.client && e.client !== "station" ? ww.el("small", { text: ` via ${e.client}` }) : null));
      }
      cells.push(ww.el("td", { text: e.detail }));
      return ww.el("tr", { "data-action": e.action }, ...cells);
    }));
  }
}

async function refreshSparks() {
  const ward = state.ward ? `?ward=${encodeURIComponent(state.ward)}` : "";
  const r = await fetch(`/api/sparklines${ward}`, { credentials: "same-origin" });
  if (!r.ok) return;
  state.sparks = await r.json();
  for (const [key, tile] of tiles) drawSpark(tile, key);
}

// -- the stream ---------------------------------------------------------------------------
function render() {
  renderGrid();
  renderAlarms();
  tickAges();
}

function connect() {
  if (state.es) state.es.close();
  const conn = document.getElementById("conn");
  const ward = state.ward ? `?ward=${encodeURIComponent(state.ward)}` : "";
  const es = new EventSource(`/api/stream${ward}`);
  state.es = es;
  es.addEventListener("snapshot", (e) => { const m = JSON.parse(e.data); alive(m); applySnapshot(m); render(); watchdog(); });
  es.addEventListener("delta", (e) => { const m = JSON.parse(e.data); alive(m); applyDelta(m); render(); });
  es.addEventListener("beat", (e) => { alive(JSON.parse(e.data)); });
  es.addEventListener("stopping", () => { state.stopping = true; watchdog(); });
  es.addEventListener("signed_out", () => { es.close(); location.href = "/login"; });
  es.onerror = () => {
    setText(conn, "connection lost — retrying");
    conn.className = "conn lost";
    if (es.readyState === EventSource.CLOSED) setTimeout(() => { if (state.es === es) connect(); }, 3000);
  };
}

async function chooseWard() {
  const sel = document.getElementById("ward");
  const r = await fetch("/api/wards", { credentials: "same-origin" });
  const wards = r.ok ? await r.json() : [];
  const asked = new URLSearchParams(location.search).get("ward");
  const remembered = sessionStorage.getItem("ww.ward");
  let ward = asked ?? remembered ?? (ww.me.wards.length === 1 ? ww.me.wards[0] : "");
  if (ward && !wards.includes(ward)) wards.push(ward);
  sel.replaceChildren(
    ...(ww.me.wards.length ? [] : [ww.el("option", { value: "", text: "All wards" })]),
    ...wards.map((w) => ww.el("option", { value: w, text: w })));
  if (!ww.me.wards.length || ww.me.wards.includes(ward)) sel.value = ward;
  else ward = sel.value;
  setWard(ward);
  sel.addEventListener("change", () => {
    setWard(sel.value);
    connect();
    refreshAudit();
    refreshSparks();
  });
}

function setWard(ward) {
  state.ward = ward;
  sessionStorage.setItem("ww.ward", ward);
  const url = new URL(location.href);
  if (ward) url.searchParams.set("ward", ward); else url.searchParams.delete("ward");
  history.replaceState(null, "", url);
  for (const [, tile] of tiles) { if (tile.chart) tile.chart.destroy(); tile.el.remove(); }
  tiles.clear();
  state.beds = new Map();
  state.order = [];
}

document.addEventListener("DOMContentLoaded", async () => {
  const me = await ww.whoami();
  setText(document.getElementById("user"), `${me.username} (${me.role})`);
  document.getElementById("sound").addEventListener("click", () => audio.enable());
  document.getElementById("pause").addEventListener("click", pauseAudio);
  document.getElementById("signout").addEventListener("click", async () => {
    await ww.post("/logout", {}).catch(() => {});
    location.href = "/login";
  });
  for (const id of ["alarm-rows", "inop-rows"]) {
    document.getElementById(id).addEventListener("click", onAction);
  }
  await chooseWard();
  connect();
  refreshAudit();
  refreshSparks();
  setInterval(watchdog, 1000);
  setInterval(tickUndo, 250);
  setInterval(refreshAudit, 5000);
  setTimeout(refreshSparks, 15000);  // a fresh page's first minute has too few points
  setInterval(refreshSparks, 60000);
});
