"""The nurses' station: a live ward page served by the daemon (aiohttp), with sign-in.

What it shows comes from a :class:`~monitor.station.source.Source`: the daemon's own beds,
or on a cluster worker the whole hospital (:mod:`monitor.station.peers`).

Pages are static files (``static/``) that read JSON and a server-sent event stream:

* ``GET /api/stream?ward=W`` — server-sent events: the ward once (``snapshot``), then
  every second only what changed (``delta``: beds and vitals that moved, the new bed order)
  or a ``beat`` when nothing did; ``stopping`` when the daemon shuts down. Gzip-compressed
  with a flush per event when the browser accepts it.
* ``GET /api/sparklines``, ``GET /api/trend/{ward}/{bed}?hours=H`` — per-minute trends
  with the forecast and its interval; ``GET /api/audit`` — the audit log.
* ``POST /api/ack`` — acknowledge or snooze (nurse or admin, with the CSRF token).

Every page and API needs a signed-in user; ``/healthz`` and ``/login`` do not. A user
limited to some wards sees and acts on only those, in every API. Static files are served
under content hashes and cached for a year; responses over 1 KB are compressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from monitor.station.auth import Accounts, Session
from monitor.station.source import NOT_HERE, Source, Wards
from monitor.station.view import Changes
from monitor.wire import validate_ack

log = logging.getLogger(__name__)

COOKIE = "ww_session"
LOGIN_COOKIE = "ww_login"
STATIC = resources.files("monitor.station").joinpath("static")
_STATIC_REF = re.compile(r'(src|href)="/static/([^"?]+)"')
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

class Station:
    """The routes of the station page, on the daemon's aiohttp application."""

    def __init__(self, source: Source, accounts: Accounts, *, secure_cookies: bool = False,
                 stream_interval_s: float = 1.0, snooze_default_s: float = 600.0,
                 snooze_max_s: float = 3600.0) -> None:
        self.source = source
        self.accounts = accounts
        self.secure = secure_cookies
        self.interval = stream_interval_s
        self.snooze_default_s = snooze_default_s
        self.snooze_max_s = snooze_max_s
        self._failures: dict[str, list[float]] = {}  # username → times of failed sign-ins
        self._closing = asyncio.Event()
        self._hashes: dict[str, str] = {}  # static file → content hash (its cache key)

    def close(self) -> None:
        """The daemon is stopping: every open stream says so and ends at once."""
        self._closing.set()

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
        r.add_get("/api/wards", self.wards)
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
        body = resp.body if isinstance(resp, web.Response) else None
        if (isinstance(body, bytes | bytearray) and len(body) > 1024
                and not resp.headers.get("Content-Encoding")):
            resp.enable_compression()  # gzip or deflate, as the browser accepts
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

    def _hash(self, name: str) -> str:
        """The content hash of a static file: part of its URL, so it can be cached forever."""
        if name not in self._hashes:
            node = STATIC.joinpath(name)
            data = node.read_bytes() if node.is_file() else b""
            self._hashes[name] = hashlib.sha256(data).hexdigest()[:12]
        return self._hashes[name]

    # -- pages -----------------------------------------------------------------------
    def page(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            self._require(request)
            html = STATIC.joinpath(name).read_text("utf-8")
            html = _STATIC_REF.sub(lambda m: f'{m[1]}="/static/{m[2]}?v={self._hash(m[2])}"',
                                   html)
            resp = web.Response(text=html, content_type="text/html")
            resp.headers["Cache-Control"] = "no-cache"
            return resp
        return handler

    async def static(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if not _STATIC_PATH.fullmatch(path):  # no "..", no absolute paths, no odd names
            raise web.HTTPNotFound()
        types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        ext = path[path.rfind("."):]
        if ext not in types:
            raise web.HTTPNotFound()
        resp = self._file(path, types[ext])
        if request.query.get("v") == self._hash(path):
            resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            resp.headers["Cache-Control"] = "no-cache"
        return resp

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
    def _wards(self, request: web.Request, s: Session) -> Wards:
        """The wards a request covers: ``?ward=`` (if the user may see it), else all the
        user's wards (None: every ward)."""
        asked = request.query.get("ward", "")
        if asked:
            if not s.sees(asked):
                raise web.HTTPForbidden(text=orjson.dumps(
                    {"error": f"not your ward: {asked[:32]}"}).decode(),
                    content_type="application/json")
            return frozenset({asked})
        return s.wards or None

    async def me(self, request: web.Request) -> web.Response:
        s = self._require(request)
        return web.json_response({
            "username": s.username, "role": s.role, "csrf": s.csrf, "may_ack": s.may("nurse"),
            "wards": sorted(s.wards), "snooze_default_s": self.snooze_default_s,
            "snooze_max_s": self.snooze_max_s})

    async def wards(self, request: web.Request) -> web.Response:
        """The wards with data or alarms that this user may see."""
        s = self._require(request)
        known = await self.source.wards()
        return web.json_response(sorted(w for w in known if s.sees(w)))

    async def beds(self, request: web.Request) -> web.Response:
        """The beds, worst first; a cluster worker that cannot show every bed says which
        are missing in the ``X-Wardwatch-Missing`` header."""
        s = self._require(request)
        got = await self.source.beds(self._wards(request, s))
        resp = web.json_response(got.beds)
        if got.missing:
            resp.headers["X-Wardwatch-Missing"] = got.missing
        return resp

    async def alarms(self, request: web.Request) -> web.Response:
        s = self._require(request)
        return web.json_response(await self.source.alarms(self._wards(request, s)))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the ward, then its changes every ``interval`` seconds."""
        s = self._require(request)
        wards = self._wards(request, s)
        token = request.cookies.get(COOKIE)
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                   "X-Accel-Buffering": "no"}
        gz = None
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            gz = zlib.compressobj(6, zlib.DEFLATED, 31)  # one gzip member for the stream
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            raw = b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
            if gz is not None:  # flushed per event: the browser gets each one at once
                raw = gz.compress(raw) + gz.flush(zlib.Z_SYNC_FLUSH)
            await resp.write(raw)

        changes = Changes()
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            got = await self.source.beds(wards)
            await send("snapshot", {"now": time.time(), "interval": self.interval,
                                    **_missing(got.missing), **changes.first(got.beds)})
            while not self._closing.is_set() and self.accounts.session(token) is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.interval)
                if self._closing.is_set():
                    break
                got = await self.source.beds(wards)
                delta = changes.next(got.beds)
                await send("beat" if delta is None else "delta",
                           {"now": time.time(), **_missing(got.missing), **(delta or {})})
            if self._closing.is_set():
                await send("stopping", {"now": time.time()})
            else:
                await send("signed_out", {})
            if gz is not None:
                await resp.write(gz.flush())
        return resp

    async def sparklines(self, request: web.Request) -> web.Response:
        """The last hour of per-minute means of every stream."""
        s = self._require(request)
        wards = self._wards(request, s)
        return web.json_response(await self.source.sparklines(wards, time.time() - 3600.0))

    async def trend(self, request: web.Request) -> web.Response:
        """Per-minute values, forecast and 95% interval, and alarm markers, for a bed."""
        s = self._require(request)
        ward, bed = request.match_info["ward"], request.match_info["bed"]
        if not s.sees(ward):
            raise web.HTTPForbidden(text='{"error": "not your ward"}',
                                    content_type="application/json")
        try:
            hours = min(24.0, max(0.25, float(request.query.get("hours", "1"))))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="hours: a number") from exc
        now = time.time()
        got = await self.source.trend(ward, bed, now - hours * 3600.0)
        return web.json_response({"ward": ward, "bed": bed, "hours": hours, "now": now, **got})

    async def audit(self, request: web.Request) -> web.Response:
        """The audit log, newest first; ``who=people`` or ``who=system`` to separate what
        staff did from wardwatch's own entries."""
        s = self._require(request)
        try:
            limit = min(500, max(1, int(request.query.get("limit", "50"))))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="limit: a whole number") from exc
        wards = self._wards(request, s)
        who = request.query.get("who", "")
        people = {"people": True, "system": False}.get(who)
        return web.json_response(await self.source.audit(wards, limit, people))

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
        if ward and not s.sees(ward):
            return web.json_response({"error": "not your ward"}, status=403)
        request_body = {**body, "by": s.username}
        problem = validate_ack(request_body)
        if problem is not None or not ward or not bed:
            return web.json_response({"error": problem or "ward and bed"}, status=400)
        error = await self.source.acknowledge(ward, bed, request_body)
        if error == NOT_HERE:
            error = f"no active alarm {str(request_body.get('id', ''))[:64]!r} on {ward}/{bed}"
        if error is not None:
            return web.json_response({"error": error}, status=409)
        return web.json_response({"ok": True})


def _missing(text: str) -> dict[str, str]:
    """In a stream event when some beds cannot be shown (a cluster worker away)."""
    return {"missing": text} if text else {}


__all__ = ["Station"]
