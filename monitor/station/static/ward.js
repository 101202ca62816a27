// The ward view: tiles per bed, the alarm list with acknowledge and snooze, the audit
// log, and alarm sounds per priority. Live over server-sent events (/api/stream).
"use strict";

const VITALS = [
  ["hr", "HR"], ["bp", "BP"], ["glucose", "Gluc"],
];
const state = { beds: [], sparks: {}, seen: new Map(), tileSig: "", alarmSig: "", now: 0 };

// Rebuild only what changed, and give focus back to the same control, so keyboard users
// are not thrown out every second; ages tick in place.
function signature(obj) {
  return JSON.stringify(obj, (k, v) => (k === "age_s" || k === "now" ? undefined : v));
}
function focusKey() {
  const a = document.activeElement;
  if (!a || a === document.body) return null;
  if (a.dataset.ack) return `button[data-ack="${a.dataset.ack}"][data-action="${a.dataset.action}"]`;
  if (a.dataset.bed && a.classList.contains("tile")) return `a.tile[data-bed="${a.dataset.bed}"]`;
  return null;
}
function restoreFocus(sel) {
  if (!sel) return;
  const e = document.querySelector(sel);
  if (e) e.focus();
}

// -- sound: a pattern per priority, repeated while unacknowledged; pausable for 2 min ------
const audio = {
  ctx: null, pausedUntil: 0, lastPlayed: { high: 0, medium: 0, low: 0 },
  REPEAT_S: { high: 10, medium: 20, low: Infinity },  // low: once per new alarm
  PATTERN: { high: [880, 5, 0.12], medium: [660, 3, 0.18], low: [440, 2, 0.25] },
  enable() {
    this.ctx = this.ctx || new AudioContext();
    this.ctx.resume();
    document.getElementById("sound").textContent = "Sound on";
  },
  play(priority) {
    if (!this.ctx || this.ctx.state !== "running" || Date.now() < this.pausedUntil) return;
    const [freq, pulses, len] = this.PATTERN[priority];
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
    this.lastPlayed[priority] = Date.now();
  },
  tick(alarms, fresh) {
    // the most urgent unacknowledged priority sounds; a new alarm sounds at once
    const loud = alarms.filter((a) => a.state === "firing" || a.state === "escalated");
    const top = loud.sort((a, b) => ww.RANK[b.priority] - ww.RANK[a.priority])[0];
    if (!top) return;
    const due = Date.now() - this.lastPlayed[top.priority] >= this.REPEAT_S[top.priority] * 1000;
    if (fresh.some((a) => a.priority === top.priority) || due) this.play(top.priority);
  },
};

function pauseAudio() {
  audio.pausedUntil = Date.now() + 120_000;
  updatePause();
}
function updatePause() {
  const btn = document.getElementById("pause");
  const left = Math.ceil((audio.pausedUntil - Date.now()) / 1000);
  if (left > 0) {
    btn.setAttribute("aria-pressed", "true");
    btn.textContent = `Audio paused ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  } else {
    btn.setAttribute("aria-pressed", "false");
    btn.textContent = "Pause audio 2 min";
  }
}

// -- rendering ----------------------------------------------------------------------------
function vitalRow(bed, key, label) {
  const v = bed.vitals;
  let value, unit, band, age, stale;
  if (key === "bp") {
    const s = v.sbp, d = v.dbp, m = v.map;
    if (!s && !d && !m) return null;
    value = `${ww.num(s && s.value)}/${ww.num(d && d.value)}` + (m ? ` (${ww.num(m.value)})` : "");
    unit = "mm[Hg]"; band = s && s.band_priority; age = s ? s.age_s : (m && m.age_s);
    stale = [s, d, m].some((x) => x && x.stale);
  } else {
    const x = v[key];
    if (!x) return null;
    value = ww.num(x.value); unit = x.unit; band = x.band_priority; age = x.age_s; stale = x.stale;
  }
  const val = ww.el("span", { class: `val${band ? " b-" + band : ""}`, text: value },
    ww.el("span", { class: "unit", text: ` ${unit}` }));
  if (band) val.append(ww.el("span", { class: "band", text: ` NEWS2 ${bandScore(bed, key)}` }));
  const ageEl = stale ? ww.el("span", { class: "stale-tag", text: `STALE ${ww.ago(age)}` })
                      : ww.el("span", { text: ww.ago(age) });
  ageEl.dataset.age = String(state.now - (age || 0));
  ageEl.dataset.prefix = stale ? "STALE " : "";
  return ww.el("div", { class: `vital${stale ? " stale" : ""}`, "data-vital": key },
    ww.el("span", { class: "name", text: label }), val, ww.el("span", { class: "age" }, ageEl));
}

function bandScore(bed, key) {
  const x = key === "bp" ? bed.vitals.sbp : bed.vitals[key];
  const code = x && x.band;
  const m = code && code.match(/news2\.(\d)$/);
  return m ? m[1] : (code ? code.split(".").slice(1).join(" ") : "");
}

function renderTiles(force) {
  const sig = signature(state.beds) + Object.keys(state.sparks).length;
  if (!force && sig === state.tileSig) return;
  state.tileSig = sig;
  const refocus = focusKey();
  const host = document.getElementById("tiles");
  const tiles = [];
  for (const bed of state.beds) {
    if (bed.ward === "_system") continue;
    const key = `${bed.ward}/${bed.bed}`;
    const head = ww.el("h3", {}, ww.el("span", { text: `Bed ${bed.ward}/${bed.bed}` }));
    if (bed.priority) head.append(ww.badge(bed.priority));
    const tile = ww.el("a", {
      class: `tile${bed.priority ? " " + bed.priority : ""}`,
      href: `/bed?ward=${encodeURIComponent(bed.ward)}&bed=${encodeURIComponent(bed.bed)}`,
      "data-bed": key, "aria-label": `Bed ${key}` + (bed.priority ? `, ${bed.priority} priority alarm` : ""),
    }, head);
    for (const [k, label] of VITALS) {
      const row = vitalRow(bed, k, label);
      if (!row) continue;
      tile.append(row);
      const spark = ww.el("div", { class: "spark", "aria-hidden": "true" });
      tile.append(spark);
      drawSpark(spark, key, k === "bp" ? "sbp" : k);
    }
    for (const a of bed.alarms) {
      tile.append(ww.el("div", { class: "alarm-line" }, ww.badge(a.priority),
        ww.el("span", { text: ` ${a.code} (${a.state})` })));
    }
    tiles.push(tile);
  }
  host.replaceChildren(...tiles);
  restoreFocus(refocus);
}

function tickAges(now) {
  for (const e of document.querySelectorAll("[data-age]")) {
    e.textContent = (e.dataset.prefix || "") + ww.ago(now - Number(e.dataset.age));
  }
}

function drawSpark(host, bedKey, metric) {
  const series = (state.sparks[bedKey] || {})[metric];
  if (!series || series.length < 2 || typeof uPlot === "undefined") return;
  const xs = series.map((p) => p[0]), ys = series.map((p) => p[1]);
  new uPlot({
    width: 200, height: 30, cursor: { show: false }, legend: { show: false },
    axes: [{ show: false }, { show: false }], scales: { x: { time: true } },
    series: [{}, { stroke: "#9aa7b4", width: 1.5, points: { show: false } }],
  }, [xs, ys], host);
}

function renderAlarms(now) {
  const rows = [];
  const alarms = state.beds.flatMap((b) => b.alarms);
  alarms.sort((a, b) => ww.RANK[b.priority] - ww.RANK[a.priority] || a.since - b.since);
  const sig = signature(alarms);
  const changed = sig !== state.alarmSig;
  state.alarmSig = sig;
  const refocus = changed ? focusKey() : null;
  for (const a of alarms) {
    let stateText = a.state + (a.latched ? " (latched: condition cleared)" : "");
    if (a.state === "acknowledged" && a.ack_action === "snooze") {
      stateText = `snoozed by ${a.acked_by} until ${ww.clock(a.snooze_until)}`;
    } else if (a.state === "acknowledged") {
      stateText = `acknowledged by ${a.acked_by}` +
        (a.snooze_until ? ` (sounds again ${ww.clock(a.snooze_until)} if it persists)` : "");
    }
    const actions = ww.el("td", { class: "actions" });
    if (ww.me && ww.me.may_ack && a.state !== "acknowledged") {
      actions.append(
        ww.el("button", { type: "button", "data-ack": a.id, "data-action": "ack",
                          "aria-label": `Acknowledge ${a.code} on bed ${a.bed}`, text: "Acknowledge" }),
        ww.el("button", { type: "button", "data-ack": a.id, "data-action": "snooze",
                          "aria-label": `Snooze ${a.code} on bed ${a.bed} for 10 minutes`, text: "Snooze 10 min" }));
    }
    const tr = ww.el("tr", { class: `${a.priority} ${a.state}`, "data-alarm": a.id,
                             "data-ward": a.ward, "data-bed": a.bed },
      ww.el("td", {}, ww.badge(a.priority)),
      ww.el("td", { text: a.ward === "_system" ? `system (${a.bed})` : `${a.ward}/${a.bed}` }),
      ww.el("td", {}, ww.el("div", { text: a.code }), ww.el("div", { class: "msg", text: a.message })),
      ww.el("td", { text: a.value == null ? "—" : ww.num(a.value) }),
      ww.el("td", { text: ww.ago(now - a.since), "data-age": String(a.since) }),
      ww.el("td", { class: "state", text: stateText }),
      actions);
    rows.push(tr);
  }
  if (changed) {
    document.getElementById("alarm-rows").replaceChildren(...rows);
    restoreFocus(refocus);
    refreshAudit();
  }
  document.getElementById("no-alarms").hidden = rows.length > 0;
  document.getElementById("alarm-count").textContent = rows.length ? `(${rows.length})` : "";
  // new or re-sounding alarms: announce and sound
  const fresh = [];
  for (const a of alarms) {
    const key = `${a.id}:${a.state}`;
    if (!state.seen.has(key) && (a.state === "firing" || a.state === "escalated")) fresh.push(a);
    state.seen.set(key, now);
  }
  if (fresh.length) {
    document.getElementById("announce").textContent = fresh
      .map((a) => `${a.priority} priority alarm, bed ${a.bed}: ${a.message}`).join(". ");
  }
  audio.tick(alarms, fresh);
}

async function refreshAudit() {
  const r = await fetch("/api/audit?limit=30", { credentials: "same-origin" });
  if (!r.ok) return;
  const rows = (await r.json()).map((e) => ww.el("tr", { "data-action": e.action },
    ww.el("td", { text: ww.clock(e.clock) }),
    ww.el("td", { text: `${e.ward}/${e.bed}` }),
    ww.el("td", { text: e.code || e.alarm_id || "—" }),
    ww.el("td", { text: e.action }),
    ww.el("td", { text: e.by, title: e.client ? `sent through ${e.client}` : "" },
      e.client && e.client !== "station" ? ww.el("small", { text: ` via ${e.client}` }) : null),
    ww.el("td", { text: e.detail })));
  document.getElementById("audit-rows").replaceChildren(...rows);
}

async function refreshSparks() {
  const r = await fetch("/api/sparklines", { credentials: "same-origin" });
  if (r.ok) { state.sparks = await r.json(); renderTiles(true); }
}

async function onAction(ev) {
  const btn = ev.target.closest("button[data-ack]");
  if (!btn) return;
  const tr = btn.closest("tr");
  btn.disabled = true;
  const body = { ward: tr.dataset.ward, bed: tr.dataset.bed, id: btn.dataset.ack,
                 action: btn.dataset.action };
  if (body.action === "snooze") body.snooze_s = 600;
  try {
    await ww.post("/api/ack", body);
    await refreshAudit();
  } catch (e) {
    document.getElementById("announce").textContent = `Could not ${body.action}: ${e.message}`;
    btn.disabled = false;
  }
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("/api/stream");
  es.addEventListener("ward", (e) => {
    const data = JSON.parse(e.data);
    state.beds = data.beds;
    state.now = data.now;
    conn.textContent = `live ${ww.clock(data.now)}`;
    conn.className = "conn live";
    renderTiles();
    renderAlarms(data.now);
    tickAges(data.now);
    updatePause();
  });
  es.addEventListener("signed_out", () => { es.close(); location.href = "/login"; });
  es.onerror = () => { conn.textContent = "connection lost — retrying"; conn.className = "conn lost"; };
}

document.addEventListener("DOMContentLoaded", async () => {
  const me = await ww.whoami();
  document.getElementById("user").textContent = `${me.username} (${me.role})`;
  document.getElementById("sound").addEventListener("click", () => audio.enable());
  document.getElementById("pause").addEventListener("click", pauseAudio);
  document.getElementById("signout").addEventListener("click", async () => {
    await ww.post("/logout", {}).catch(() => {});
    location.href = "/login";
  });
  document.getElementById("alarm-rows").addEventListener("click", onAction);
  connect();
  refreshAudit();
  refreshSparks();
  setInterval(refreshAudit, 5000);
  setInterval(refreshSparks, 60000);
});
