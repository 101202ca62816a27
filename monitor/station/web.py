"""The nurses' station: a live ward page served by the daemon (aiohttp), with sign-in.

Pages are static files (``static/``) that read JSON and a server-sent event stream:

* ``GET /api/stream`` — every second, the ward as it is: per bed the newest accepted
  value of each vital with its age, NEWS2 band and staleness, and the active alarms.
* ``GET /api/sparklines``, ``GET /api/trend/{ward}/{bed}?hours=H`` — per-minute trends
  with the forecast and its interval; ``GET /api/audit`` — the audit log.
* ``POST /api/ack`` — acknowledge or snooze (nurse or admin, with the CSRF token).

Every page and API needs a signed-in user; ``/healthz`` and ``/login`` do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from importlib import resources
from typing import Any

from aiohttp import web

from monitor.alarms import GroupState
from monitor.alarmstore import AlarmStore
from monitor.pipeline import Processor
from monitor.rules import RULES
from monitor.station.auth import Accounts, Session
from monitor.trends import FC, FC_SD, FC_T, MEAN, MINUTE
from monitor.vitals import METRICS
from monitor.wire import validate_ack

log = logging.getLogger(__name__)

COOKIE = "ww_session"
LOGIN_COOKIE = "ww_login"
RANK = {"high": 3, "medium": 2, "low": 1}
STATIC = resources.files("monitor.station").joinpath("static")
_STATIC_PATH = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*[A-Za-z0-9_-][A-Za-z0-9._-]*")
MAX_FAILURES = 5  # failed sign-ins per user within LOCKOUT_S, then refused for LOCKOUT_S
LOCKOUT_S = 300.0
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

Acknowledge = Callable[[str, str, dict[str, Any]], Awaitable[str | None]]


def alarm_view(ev: Any, gs: GroupState) -> dict[str, Any]:
    d = asdict(ev)
    d.update(latched=gs.latched, escalated=gs.escalated, acked_by=gs.acked_by,
             ack_action=gs.ack_action, snooze_until=gs.snooze_until, since=gs.fired_at)
    return d


def ward_snapshot(processor: Processor, now: float) -> list[dict[str, Any]]:
    """Every bed: newest accepted vitals with age, band and staleness; active alarms."""
    st = processor.streams
    engine = processor.alarms
    beds: dict[tuple[str, str], dict[str, Any]] = {}

    def bed_entry(ward: str, bed: str) -> dict[str, Any]:
        return beds.setdefault((ward, bed), {"ward": ward, "bed": bed, "vitals": {},
                                             "alarms": [], "priority": None})

    for i, (ward, bed, mid) in enumerate(st.keys):
        if mid >= len(METRICS):
            continue
        m = METRICS[mid]
        value, t = float(st.value[i]), float(st.value_t[i])
        rule = RULES.get(mid)
        band = rule.bands[rule.band_of(value)] if rule is not None and value == value else None
        stale_group = engine.groups.get((ward, bed, f"{m.name}.stale"))
        bed_entry(ward, bed)["vitals"][m.name] = {
            "value": None if math.isnan(value) else value,
            "t": None if math.isnan(t) else t,
            "age_s": max(0.0, now - float(st.wall_seen[i])),
            "unit": m.unit,
            "band": band.code if band else None,
            "band_priority": band.priority if band else None,
            "stale": stale_group is not None and stale_group.alarm is not None,
        }
    for ev, gs in engine.active():
        entry = bed_entry(ev.ward, ev.bed)
        entry["alarms"].append(alarm_view(ev, gs))
        if RANK[ev.priority] > RANK.get(entry["priority"] or "", 0):
            entry["priority"] = ev.priority
    for (ward, bed), (t, score) in processor.bed_scores.items():
        bed_entry(ward, bed)["anomaly"] = {"score": score, "t": t}
    out = sorted(beds.values(), key=lambda b: (-RANK.get(b["priority"] or "", 0),
                                                b["ward"], _natural(b["bed"])))
    for b in out:
        b["alarms"].sort(key=lambda a: (-RANK[a["priority"]], a["since"]))
    return out


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


class Station:
    """The routes of the station page, on the daemon's aiohttp application."""

    def __init__(self, processor: Processor, accounts: Accounts, alarm_store: AlarmStore,
                 acknowledge: Acknowledge, *, secure_cookies: bool = False,
                 stream_interval_s: float = 1.0) -> None:
        self.processor = processor
        self.accounts = accounts
        self.alarm_store = alarm_store
        self.acknowledge = acknowledge
        self.secure = secure_cookies
        self.interval = stream_interval_s
        self._failures: dict[str, list[float]] = {}  # username → times of failed sign-ins

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self._headers)
        r = app.router
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/", self.page("ward.html"))
        r.add_get("/bed", self.page("bed.html"))
        r.add_get("/static/{path:.+}", self.static)
        r.add_get("/api/me", self.me)
        r.add_get("/api/beds", self.beds)
        r.add_get("/api/alarms", self.alarms)
        r.add_get("/api/stream", self.stream)
        r.add_get("/api/sparklines", self.sparklines)
        r.add_get("/api/trend/{ward}/{bed}", self.trend)
        r.add_get("/api/audit", self.audit)
        r.add_post("/api/ack", self.ack)

    # -- plumbing --------------------------------------------------------------------
    @web.middleware
    async def _headers(self, request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                       ) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except web.HTTPException as exc:  # redirects and errors (303/401/403/404) too
            self._secure(request, exc.headers)
            raise
        self._secure(request, resp.headers)
        return resp

    @staticmethod
    def _secure(request: web.Request, headers: Any) -> None:
        headers.update(_SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            headers["Cache-Control"] = "no-store"

    def _session(self, request: web.Request) -> Session | None:
        return self.accounts.session(request.cookies.get(COOKIE))

    def _require(self, request: web.Request, role: str = "viewer") -> Session:
        s = self._session(request)
        if s is None:
            if request.path.startswith("/api/"):
                raise web.HTTPUnauthorized(text='{"error": "sign in"}',
                                           content_type="application/json")
            raise web.HTTPSeeOther("/login")
        if not s.may(role):
            raise web.HTTPForbidden(text=f'{{"error": "needs the {role} role"}}',
                                    content_type="application/json")
        return s

    def _require_change(self, request: web.Request, role: str) -> Session:
        """A state-changing request: signed in with ``role``, CSRF token, same origin."""
        s = self._require(request, role)
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise web.HTTPForbidden(text='{"error": "cross-origin request"}',
                                    content_type="application/json")
        if not self.accounts.csrf_ok(s, request.headers.get("X-CSRF-Token")):
            raise web.HTTPForbidden(text='{"error": "missing or wrong CSRF token"}',
                                    content_type="application/json")
        return s

    def _file(self, name: str, content_type: str) -> web.Response:
        node = STATIC.joinpath(name)
        if not node.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=node.read_bytes(), content_type=content_type)

    # -- pages -----------------------------------------------------------------------
    def page(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            self._require(request)
            return self._file(name, "text/html")
        return handler

    async def static(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if not _STATIC_PATH.fullmatch(path):  # no "..", no absolute paths, no odd names
            raise web.HTTPNotFound()
        types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        ext = path[path.rfind("."):]
        if ext not in types:
            raise web.HTTPNotFound()
        return self._file(path, types[ext])

    async def login_page(self, request: web.Request) -> web.Response:
        token = secrets.token_urlsafe(24)
        html = STATIC.joinpath("login.html").read_text("utf-8").replace("{{csrf}}", token)
        error = "Wrong username or password." if request.query.get("failed") else ""
        html = html.replace("{{error}}", error)
        resp = web.Response(text=html, content_type="text/html")
        resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict",
                        secure=self.secure, path="/login")
        return resp

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        cookie = request.cookies.get(LOGIN_COOKIE)
        presented = str(form.get("csrf", ""))
        if not cookie or not secrets.compare_digest(cookie, presented):
            raise web.HTTPForbidden(text="The sign-in form expired; reload the page.")
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        now = time.monotonic()
        recent = [t for t in self._failures.get(username, []) if now - t < LOCKOUT_S]
        if len(recent) >= MAX_FAILURES:
            log.warning("sign-in for %r refused: %d failures in %.0f s", username[:64],
                        len(recent), LOCKOUT_S)
            raise web.HTTPTooManyRequests(text="Too many failed sign-ins; try again later.")
        role = await asyncio.to_thread(self.accounts.check_password, username, password)
        if role is None:
            self._failures[username[:64]] = [*recent, now]
            log.warning("failed sign-in for %r from %s", username[:64], request.remote)
            raise web.HTTPSeeOther("/login?failed=1")
        self._failures.pop(username, None)
        token = self.accounts.open_session(username)
        log.info("%s (%s) signed in from %s", username, role, request.remote)
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=self.secure,
                        path="/", max_age=int(self.accounts.max_s))
        resp.del_cookie(LOGIN_COOKIE, path="/login")
        raise resp

    async def logout(self, request: web.Request) -> web.Response:
        self._require_change(request, "viewer")
        token = request.cookies.get(COOKIE)
        if token:
            self.accounts.close_session(token)
        resp = web.json_response({"signed_out": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    # -- API -------------------------------------------------------------------------
    async def me(self, request: web.Request) -> web.Response:
        s = self._require(request)
        return web.json_response({"username": s.username, "role": s.role, "csrf": s.csrf,
                                  "may_ack": s.may("nurse")})

    async def beds(self, request: web.Request) -> web.Response:
        self._require(request)
        return web.json_response(ward_snapshot(self.processor, time.time()))

    async def alarms(self, request: web.Request) -> web.Response:
        self._require(request)
        return web.json_response([alarm_view(ev, gs)
                                  for ev, gs in self.processor.alarms.active()])

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the ward every ``interval`` seconds, while signed in."""
        self._require(request)
        token = request.cookies.get(COOKIE)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            while self.accounts.session(token) is not None:
                now = time.time()
                body = web.json_response({"now": now, "beds": ward_snapshot(
                    self.processor, now)}).text
                await resp.write(f"event: ward\ndata: {body}\n\n".encode())
                await asyncio.sleep(self.interval)
            await resp.write(b"event: signed_out\ndata: {}\n\n")
        return resp

    async def sparklines(self, request: web.Request) -> web.Response:
        """The last hour of per-minute means of every stream."""
        self._require(request)
        since = time.time() - 3600.0
        trends = self.processor.trends
        out: dict[str, dict[str, list[list[float]]]] = {}
        for i, (ward, bed, mid) in enumerate(self.processor.streams.keys):
            if mid >= len(METRICS):
                continue
            rows = trends.series(i, since)
            out.setdefault(f"{ward}/{bed}", {})[METRICS[mid].name] = [
                [r[MINUTE] * 60.0, round(r[MEAN], 1)] for r in rows.tolist()]
        return web.json_response(out)

    async def trend(self, request: web.Request) -> web.Response:
        """Per-minute values, forecast and 95% interval, and alarm markers, for a bed."""
        self._require(request)
        ward, bed = request.match_info["ward"], request.match_info["bed"]
        try:
            hours = min(24.0, max(0.25, float(request.query.get("hours", "1"))))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="hours: a number") from exc
        since = time.time() - hours * 3600.0
        st = self.processor.streams
        vitals: dict[str, Any] = {}
        for mid, m in enumerate(METRICS):
            s = st.find(ward, bed, mid)
            if s is None:
                continue
            rows = self.processor.trends.series(s, since)
            vitals[m.name] = {
                "unit": m.unit,
                "t": (rows[:, MINUTE] * 60.0).tolist(),
                "value": _nulls(rows[:, MEAN]),
                "forecast_t": _nulls(rows[:, FC_T]),
                "forecast": _nulls(rows[:, FC]),
                "lo": _nulls(rows[:, FC] - 1.96 * rows[:, FC_SD]),
                "hi": _nulls(rows[:, FC] + 1.96 * rows[:, FC_SD]),
            }
        fired = [e for e in self.alarm_store.audit_log(ward=ward, limit=500)
                 if e["bed"] == bed and e["action"] == "firing" and e["clock"] >= since]
        return web.json_response({"ward": ward, "bed": bed, "hours": hours, "now": time.time(),
                                  "vitals": vitals, "alarms": fired})

    async def audit(self, request: web.Request) -> web.Response:
        self._require(request)
        try:
            limit = min(500, max(1, int(request.query.get("limit", "50"))))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="limit: a whole number") from exc
        ward = request.query.get("ward") or None
        return web.json_response(self.alarm_store.audit_log(ward=ward, limit=limit))

    async def ack(self, request: web.Request) -> web.Response:
        s = self._require_change(request, "nurse")
        try:
            body = await request.json()
        except ValueError as exc:
            raise web.HTTPBadRequest(text='{"error": "JSON body"}',
                                     content_type="application/json") from exc
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text='{"error": "JSON object"}',
                                     content_type="application/json")
        ward, bed = str(body.pop("ward", "")), str(body.pop("bed", ""))
        request_body = {**body, "by": s.username}
        problem = validate_ack(request_body)
        if problem is not None or not ward or not bed:
            return web.json_response({"error": problem or "ward and bed"}, status=400)
        error = await self.acknowledge(ward, bed, request_body)
        if error is not None:
            return web.json_response({"error": error}, status=409)
        return web.json_response({"ok": True})


def _nulls(a: Any) -> list[float | None]:
    return [None if x != x else round(x, 2) for x in a.tolist()]


__all__ = ["Station", "alarm_view", "ward_snapshot"]
