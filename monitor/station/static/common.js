// Shared by the station pages: the signed-in user, API calls with the CSRF token, and
// small formatting helpers. Every value reaches the DOM through textContent.
"use strict";

const ww = {
  me: null,
  PRIORITY_TEXT: { high: "HIGH", medium: "MED", low: "LOW" },
  RANK: { high: 3, medium: 2, low: 1 },

  async whoami() {
    const r = await fetch("/api/me", { credentials: "same-origin" });
    if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
    ww.me = await r.json();
    return ww.me;
  },

  async post(path, body) {
    const r = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": ww.me.csrf },
      body: JSON.stringify(body),
    });
    if (r.status === 401) { location.href = "/login"; }
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
    return data;
  },

  el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  },

  badge(priority) {
    return ww.el("span", { class: `prio ${priority}`, text: ww.PRIORITY_TEXT[priority] });
  },

  ago(seconds) {
    if (seconds == null || !isFinite(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  },

  clock(epoch) {
    return new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });
  },

  num(v) {
    if (v == null) return "—";
    return Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(1);
  },
};
