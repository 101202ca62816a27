"""The station across a cluster: any worker's page shows the whole hospital.

A ward's beds are spread over every partition, so over every worker. Each worker serves,
beside its station, a peer API: ``POST /cluster/v1/{op}`` answers for the partitions it
holds only, with their numbers, to a caller that presents the workers' shared secret
(``Authorization: Bearer``, ``[cluster] peer_secret_file``). A worker's station
(:class:`Hospital`) asks its own partitions and every live worker at once and merges the
answers: the beds worst first, the alarms, the trends, the audit log newest first. An
acknowledgement goes to whichever holds the alarm, so it is recorded where the alarm
lives, as one over MQTT is.

**Nothing missing in silence.** Each answer names the partitions it covers. A partition
no answer covers (a worker not answering, or a partition between two holders during a
failover) makes the page say, across its width, that some beds are not shown and why,
until every partition is covered again. An acknowledgement of an alarm no reachable
worker holds is refused with the reason, not reported done.

Workers find each other's station in their presence message
(``wardwatch/v1/cluster/workers/{id}``: ``{"status": "online", "station": URL}``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.station.source import (
    NOT_HERE,
    Away,
    Beds,
    Merged,
    Source,
    Wards,
    acknowledge_any,
)
from monitor.station.web import Station

log = logging.getLogger(__name__)

PREFIX = "/cluster/v1/"
TIMEOUT_S = 2.0  # a worker that does not answer within this is away, for this request
FRESH_S = 0.5  # the beds of a set of wards are asked of the others at most this often
_OPS = ("wards", "beds", "alarms", "sparklines", "trend", "audit", "acknowledge")


def _plain(result: Any) -> Any:
    if isinstance(result, Beds):
        return {"beds": result.beds, "missing": result.missing}
    if isinstance(result, set):
        return sorted(result)
    return result


class PeerApi:
    """``POST /cluster/v1/{op}``: this worker's partitions, for the other workers."""

    def __init__(self, source: Source, held: Callable[[], set[int]], secret: str) -> None:
        self.source = source
        self.held = held
        self.secret = secret.encode()

    def install(self, app: web.Application) -> None:
        app.router.add_post(PREFIX + "{op}", self.call)

    async def call(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, self.secret):
            raise web.HTTPUnauthorized(text='{"error": "not a worker of this cluster"}',
                                       content_type="application/json")
        op = request.match_info["op"]
        if op not in _OPS:
            raise web.HTTPNotFound()
        try:
            args = orjson.loads(await request.read())
            if not isinstance(args, dict):
                raise TypeError("a JSON object")
            if "wards" in args:
                args["wards"] = None if args["wards"] is None else frozenset(args["wards"])
            held = self.held()  # before: what it answers for is at least this
            result = await getattr(self.source, op)(**args)
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=orjson.dumps({"error": str(exc)}).decode(),
                                     content_type="application/json") from exc
        return web.json_response({"held": sorted(held), "data": _plain(result)},
                                 dumps=lambda o: orjson.dumps(o).decode())


@dataclass
class Remote:
    """Another worker's partitions, over its peer API."""

    name: str
    url: str
    secret: str
    session: aiohttp.ClientSession
    held: set[int] = field(default_factory=set)  # as of its last answer
    away: bool = False  # its last call failed

    async def _call(self, op: str, **args: Any) -> Any:
        if "wards" in args and args["wards"] is not None:
            args["wards"] = sorted(args["wards"])
        try:
            async with self.session.post(
                    self.url.rstrip("/") + PREFIX + op, data=orjson.dumps(args),
                    headers={"Authorization": f"Bearer {self.secret}",
                             "Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as resp:
                if resp.status != 200:
                    raise Away(self.name, f"HTTP {resp.status}: {(await resp.text())[:200]}")
                body = orjson.loads(await resp.read())
            self.held, self.away = set(body["held"]), False
            return body["data"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            if not self.away:
                log.warning("worker %s (%s) not answering the station: %s", self.name,
                            self.url, exc or type(exc).__name__)
            self.held, self.away = set(), True
            raise Away(self.name, str(exc)) from exc

    async def wards(self) -> set[str]:
        return set(await self._call("wards"))

    async def beds(self, wards: Wards) -> Beds:
        got = await self._call("beds", wards=wards)
        return Beds(got["beds"], got["missing"])

    async def alarms(self, wards: Wards) -> list[dict[str, Any]]:
        return list(await self._call("alarms", wards=wards))

    async def sparklines(self, wards: Wards, since: float,
                         ) -> dict[str, dict[str, list[list[float]]]]:
        return dict(await self._call("sparklines", wards=wards, since=since))

    async def trend(self, ward: str, bed: str, since: float) -> dict[str, Any]:
        return dict(await self._call("trend", ward=ward, bed=bed, since=since))

    async def audit(self, wards: Wards, limit: int, people: bool | None,
                    ) -> list[dict[str, Any]]:
        return list(await self._call("audit", wards=wards, limit=limit, people=people))

    async def acknowledge(self, ward: str, bed: str, request: dict[str, Any]) -> str | None:
        got = await self._call("acknowledge", ward=ward, bed=bed, request=request)
        return None if got is None else str(got)


class Hospital(Merged):
    """A worker's own partitions and every other live worker's, as one source."""

    def __init__(self, own: Source, held: Callable[[], set[int]], partitions: int,
                 stations: Callable[[], dict[str, str]], secret: str) -> None:
        super().__init__(self._sources)
        self.own = own
        self.held = held
        self.partitions = partitions
        self.stations = stations
        self.secret = secret
        self.session: aiohttp.ClientSession | None = None
        self._remotes: dict[tuple[str, str], Remote] = {}
        self._beds: dict[Wards, tuple[float, asyncio.Future[Beds]]] = {}

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def remotes(self) -> list[Remote]:
        assert self.session is not None, "Hospital.start() first"
        want = self.stations()
        self._remotes = {(n, u): self._remotes.get((n, u)) or Remote(n, u, self.secret,
                                                                     self.session)
                         for n, u in want.items()}
        return list(self._remotes.values())

    def _sources(self) -> Sequence[Source]:
        return [self.own, *self.remotes()]

    def missing(self) -> str:
        """Which beds are not shown, in words ("": none): partitions no answer covers."""
        remotes = list(self._remotes.values())
        covered = set(self.held()).union(*(r.held for r in remotes))
        gap = set(range(self.partitions)) - covered
        if not gap:
            return ""
        away = sorted(r.name for r in remotes if r.away)
        why = (f"worker {', '.join(away)} not answering" if away
               else "being handed over, or taken over after a worker was lost")
        return (f"Some beds are not shown: {len(gap)} of {self.partitions} partitions "
                f"have no worker answering ({why})")

    async def beds(self, wards: Wards) -> Beds:
        """As :meth:`Merged.beds`, asked of the others at most every FRESH_S for all the
        pages open on the same wards."""
        now = time.monotonic()
        at, fut = self._beds.get(wards, (0.0, None))
        if fut is None or (fut.done() and now - at >= FRESH_S):
            fut = asyncio.ensure_future(self._fresh_beds(wards))
            self._beds[wards] = (now, fut)
        return await asyncio.shield(fut)

    async def _fresh_beds(self, wards: Wards) -> Beds:
        got = await super().beds(wards)
        missing = "; ".join(m for m in (got.missing, self.missing()) if m)
        return Beds(got.beds, missing)

    async def acknowledge(self, ward: str, bed: str, request: dict[str, Any]) -> str | None:
        error = await self.own.acknowledge(ward, bed, request)
        if error != NOT_HERE:  # one of this worker's partitions holds it
            return error
        return await acknowledge_any(self.remotes(), ward, bed, request)


class WorkerStation:
    """A cluster worker's station page (``[http] port``) and peer API, on one server."""

    def __init__(self, settings: Settings, *, own: Callable[[], Sequence[Source]],
                 held: Callable[[], set[int]], stations: Callable[[], dict[str, str]],
                 store: Path) -> None:
        from monitor.station.auth import Accounts

        cl, h = settings.cluster, settings.http
        if not cl.peer_secret_file:
            raise ConfigError("a cluster worker's station ([http] port) needs [cluster] "
                              "peer_secret_file: a secret all the workers share")
        try:
            secret = Path(cl.peer_secret_file).expanduser().read_text("utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"[cluster] peer_secret_file: {exc}") from exc
        if len(secret) < 16:
            raise ConfigError("[cluster] peer_secret_file: at least 16 characters")
        self.settings = settings
        self.own = Merged(own)
        self.hospital = Hospital(self.own, held, cl.partitions, stations, secret)
        self.peer_api = PeerApi(self.own, held, secret)
        self.accounts = Accounts(store / "station.db", idle_s=h.session_idle_s,
                                 max_s=h.session_max_s)
        self.station: Station | None = None
        self.runner: web.AppRunner | None = None
        host = socket.getfqdn() if h.host in ("0.0.0.0", "::", "") else h.host
        self.url = cl.station_url or f"http://{host}:{h.port}"

    async def start(self) -> None:
        h, a = self.settings.http, self.settings.alarms
        await self.hospital.start()
        app = web.Application()
        self.station = Station(self.hospital, self.accounts, secure_cookies=h.secure_cookies,
                               snooze_default_s=a.snooze_default_s,
                               snooze_max_s=a.snooze_max_s)
        self.station.install(app)
        self.peer_api.install(app)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        try:
            await web.TCPSite(self.runner, h.host, h.port).start()
        except OSError as exc:
            await self.stop()
            raise ConfigError(f"cannot serve HTTP on {h.host}:{h.port}: {exc}") from exc
        log.info("station on %s:%d (the others reach it at %s)", h.host, h.port, self.url)

    def closing(self) -> None:
        """The worker is stopping: open pages say so."""
        if self.station is not None:
            self.station.close()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        await self.hospital.close()
        self.accounts.close()


__all__ = ["Hospital", "PeerApi", "Remote", "WorkerStation"]
