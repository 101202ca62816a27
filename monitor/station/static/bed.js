// Bed detail: per-minute trends of each vital with the forecast, its 95% interval and
// markers where alarms fired, over a selectable window.
"use strict";

const params = new URLSearchParams(location.search);
const ward = params.get("ward"), bed = params.get("bed");
const LABELS = { hr: "Heart rate", sbp: "Systolic BP", dbp: "Diastolic BP",
                 map: "Mean arterial pressure", glucose: "Glucose" };

function chart(host, name, v, alarms, t) {
  // one x axis: the minutes of the values, and the minutes the forecasts are for
  const fcAt = new Map();
  v.forecast_t.forEach((ft, i) => {
    if (ft != null && v.forecast[i] != null) fcAt.set(Math.round(ft / 60) * 60, i);
  });
  const xs = [...new Set([...v.t, ...fcAt.keys()])].sort((a, b) => a - b);
  const val = new Map(v.t.map((t, i) => [t, v.value[i]]));
  const pick = (arr) => xs.map((x) => (fcAt.has(x) ? arr[fcAt.get(x)] : null));
  const data = [xs, xs.map((x) => (val.has(x) ? val.get(x) : null)), pick(v.forecast),
                pick(v.lo), pick(v.hi)];
  const marks = alarms.filter((a) => a.code.startsWith(name) || !/^(hr|sbp|dbp|map|glucose)\./.test(a.code));
  const box = ww.el("div", { class: "chart" }, ww.el("h3", { text: `${LABELS[name]} (${v.unit})` }));
  host.append(box);
  new uPlot({
    width: Math.max(300, host.clientWidth - 16), height: 220,
    scales: { x: { time: true, range: () => {
      // one clock, the data's: the window asked for, back from the newest value, out to
      // the furthest forecast (in the demo, simulated time runs ahead of the wall clock)
      const now = v.t.length ? Math.max(...v.t) : t.now;
      return [now - t.hours * 3600, Math.max(now, ...xs)];
    } } },
    axes: [{ stroke: "#9aa7b4", grid: { stroke: "#2c3641" } },
           { stroke: "#9aa7b4", grid: { stroke: "#2c3641" } }],
    series: [{},
      { label: "value", stroke: "#e8edf2", width: 2, spanGaps: false },
      { label: "forecast", stroke: "#3fd4ff", dash: [6, 4], width: 1.5 },
      { label: "95% low", stroke: "rgba(63,212,255,0.35)", width: 1, points: { show: false } },
      { label: "95% high", stroke: "rgba(63,212,255,0.35)", width: 1, points: { show: false } }],
    bands: [{ series: [4, 3], fill: "rgba(63,212,255,0.12)" }],
    hooks: { draw: [(u) => {
      const ctx = u.ctx;
      ctx.save();
      for (const a of marks) {
        // at the observation time the alarm names: the data's clock, not the wall's
        const x = u.valToPos(a.t ?? a.clock, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
        ctx.strokeStyle = a.priority === "high" ? "#ff4d4d" : a.priority === "medium" ? "#ffd23f" : "#3fd4ff";
        ctx.lineWidth = 2;
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
      }
      ctx.restore();
    }] },
  }, data, box);
}

async function load(hours) {
  const r = await fetch(`/api/trend/${encodeURIComponent(ward)}/${encodeURIComponent(bed)}?hours=${hours}`,
                        { credentials: "same-origin" });
  if (r.status === 401) { location.href = "/login"; return; }
  const t = await r.json();
  const host = document.getElementById("charts");
  host.replaceChildren();
  for (const [name, v] of Object.entries(t.vitals)) chart(host, name, v, t.alarms, t);
  document.getElementById("fired").replaceChildren(...t.alarms.map((a) => ww.el("tr", {},
    ww.el("td", { text: ww.clock(a.t ?? a.clock) }), ww.el("td", { text: a.code }),
    ww.el("td", {}, ww.badge(a.priority)), ww.el("td", { text: a.detail }))));
}

document.addEventListener("DOMContentLoaded", async () => {
  await ww.whoami();
  document.getElementById("title").textContent = `bed ${ward}/${bed}`;
  document.title = `wardwatch — bed ${ward}/${bed}`;
  for (const b of document.querySelectorAll("button[data-hours]")) {
    b.addEventListener("click", () => {
      for (const o of document.querySelectorAll("button[data-hours]")) o.setAttribute("aria-pressed", String(o === b));
      load(Number(b.dataset.hours));
    });
  }
  load(1);
});
