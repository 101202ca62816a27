"""Where the station's data comes from.

:class:`Local` is one daemon: its processor (the beds' newest values, trends and active
alarms), its alarm store (the audit log) and its acknowledge. :class:`Merged` is several
of them as one: a cluster worker's partitions, or (:mod:`monitor.station.peers`) those
and the other workers'. The station asks a :class:`Source` and does not know which.

Every answer is plain JSON-able data, so that a worker can pass it to another over HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from monitor.alarmstore import AlarmStore
from monitor.pipeline import Processor
from monitor.station.view import alarm_view, merge_beds, rule_of, ward_snapshot
from monitor.station.words import unit_text
from monitor.trends import FC, FC_SD, FC_T, MEAN, MINUTE
from monitor.vitals import METRICS

Wards = frozenset[str] | None  # the wards a request covers; None: every ward
Acknowledge = Callable[[str, str, dict[str, Any]], Awaitable[str | None]]
NOT_HERE = "not here"  # acknowledge: no active alarm of that id on this source's beds


class Away(Exception):
    """A source that did not answer (another worker of a cluster)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Beds:
    """The beds of some wards, worst first, and what is missing from them ("": nothing)."""

    beds: list[dict[str, Any]]
    missing: str = ""


class Source(Protocol):
    async def wards(self) -> set[str]: ...
    async def beds(self, wards: Wards) -> Beds: ...
    async def alarms(self, wards: Wards) -> list[dict[str, Any]]: ...
    async def sparklines(self, wards: Wards, since: float,
                         ) -> dict[str, dict[str, list[list[float]]]]: ...
    async def trend(self, ward: str, bed: str, since: float) -> dict[str, Any]: ...
    async def audit(self, wards: Wards, limit: int, people: bool | None,
                    ) -> list[dict[str, Any]]: ...
    async def acknowledge(self, ward: str, bed: str, request: dict[str, Any]) -> str | None: ...


@dataclass
class Local:
    """One daemon's beds."""

    processor: Processor
    alarm_store: AlarmStore
    ack: Acknowledge
    mmol_wards: frozenset[str] = frozenset()
    exclusive: bool = True  # the only source: an ack for an unknown alarm is audited here

    async def wards(self) -> set[str]:
        known = {k[0] for k in self.processor.streams.keys}
        known |= {ev.ward for ev, _ in self.processor.alarms.active()}
        known.discard("_system")
        return known

    async def beds(self, wards: Wards) -> Beds:
        return Beds(ward_snapshot(self.processor, wards=wards, mmol_wards=self.mmol_wards))

    async def alarms(self, wards: Wards) -> list[dict[str, Any]]:
        engine = self.processor.alarms
        return [alarm_view(ev, gs, *rule_of(engine, ev)) for ev, gs in engine.active()
                if wards is None or ev.ward in wards]

    async def sparklines(self, wards: Wards, since: float,
                         ) -> dict[str, dict[str, list[list[float]]]]:
        trends = self.processor.trends
        out: dict[str, dict[str, list[list[float]]]] = {}
        for i, (ward, bed, mid) in enumerate(self.processor.streams.keys):
            if mid >= len(METRICS) or (wards is not None and ward not in wards):
                continue
            rows = trends.series(i, since)
            out.setdefault(f"{ward}/{bed}", {})[METRICS[mid].name] = [
                [r[MINUTE] * 60.0, round(r[MEAN], 1)] for r in rows.tolist()]
        return out

    async def trend(self, ward: str, bed: str, since: float) -> dict[str, Any]:
        """Per-minute values, forecast and 95% interval, and the alarms fired, of a bed."""
        st = self.processor.streams
        mmol = ward in self.mmol_wards or "*" in self.mmol_wards
        vitals: dict[str, Any] = {}
        for mid, m in enumerate(METRICS):
            sid = st.find(ward, bed, mid)
            if sid is None:
                continue
            rows = self.processor.trends.series(sid, since)
            vitals[m.name] = {
                "unit": unit_text(m.name, mmol),
                "t": (rows[:, MINUTE] * 60.0).tolist(),
                "value": _nulls(rows[:, MEAN]),
                "forecast_t": _nulls(rows[:, FC_T]),
                "forecast": _nulls(rows[:, FC]),
                "lo": _nulls(rows[:, FC] - 1.96 * rows[:, FC_SD]),
                "hi": _nulls(rows[:, FC] + 1.96 * rows[:, FC_SD]),
            }
        fired = [e for e in self.alarm_store.audit_log(ward=ward, limit=500)
                 if e["bed"] == bed and e["action"] == "firing"
                 and (e["clock"] if e["t"] is None else e["t"]) >= since]
        return {"vitals": vitals, "alarms": fired}

    async def audit(self, wards: Wards, limit: int, people: bool | None,
                    ) -> list[dict[str, Any]]:
        return self.alarm_store.audit_log(wards=sorted(wards) if wards is not None else None,
                                          limit=limit, people=people)

    async def acknowledge(self, ward: str, bed: str, request: dict[str, Any]) -> str | None:
        key = self.processor.alarms.by_id.get(str(request.get("id", "")))
        if not self.exclusive and (key is None or key[:2] != (ward, bed)):
            return NOT_HERE
        return await self.ack(ward, bed, request)


@dataclass
class Merged:
    """Several sources as one (each bed is in one of them)."""

    sources: Callable[[], Sequence[Source]]

    async def _all(self, call: Callable[[Source], Awaitable[Any]]) -> list[Any]:
        """Every source's answer; those :class:`Away` are left out (and say so)."""
        got = await asyncio.gather(*(call(s) for s in self.sources()), return_exceptions=True)
        for g in got:
            if isinstance(g, BaseException) and not isinstance(g, Away):
                raise g
        return [g for g in got if not isinstance(g, Away)]

    async def wards(self) -> set[str]:
        return set().union(*await self._all(lambda s: s.wards()))

    async def beds(self, wards: Wards) -> Beds:
        got: list[Beds] = await self._all(lambda s: s.beds(wards))
        return Beds(merge_beds(b.beds for b in got),
                    "; ".join(b.missing for b in got if b.missing))

    async def alarms(self, wards: Wards) -> list[dict[str, Any]]:
        once = {a["id"]: a for got in await self._all(lambda s: s.alarms(wards)) for a in got}
        return sorted(once.values(), key=lambda a: a["rank"])

    async def sparklines(self, wards: Wards, since: float,
                         ) -> dict[str, dict[str, list[list[float]]]]:
        out: dict[str, dict[str, list[list[float]]]] = {}
        for got in await self._all(lambda s: s.sparklines(wards, since)):
            for key, vitals in got.items():
                out.setdefault(key, {}).update(vitals)
        return out

    async def trend(self, ward: str, bed: str, since: float) -> dict[str, Any]:
        out: dict[str, Any] = {"vitals": {}, "alarms": []}
        for got in await self._all(lambda s: s.trend(ward, bed, since)):
            out["vitals"].update(got["vitals"])
            out["alarms"].extend(got["alarms"])
        out["alarms"].sort(key=_when, reverse=True)
        return out

    async def audit(self, wards: Wards, limit: int, people: bool | None,
                    ) -> list[dict[str, Any]]:
        return newest(await self._all(lambda s: s.audit(wards, limit, people)), limit)

    async def acknowledge(self, ward: str, bed: str, request: dict[str, Any]) -> str | None:
        return await acknowledge_any(self.sources(), ward, bed, request)


async def acknowledge_any(sources: Sequence[Source], ward: str, bed: str,
                          request: dict[str, Any]) -> str | None:
    """Acknowledge where the alarm is: the answer of the source that holds it, else
    NOT_HERE, or an error naming the sources that did not answer (one may hold it)."""
    got = await asyncio.gather(*(s.acknowledge(ward, bed, request) for s in sources),
                               return_exceptions=True)
    away = []
    for g in got:
        if isinstance(g, Away):
            away.append(g.name)
        elif isinstance(g, BaseException):
            raise g
        elif g != NOT_HERE:
            return g
    if away:
        return (f"not recorded: {', '.join(away)} did not answer, and may hold the alarm; "
                "try again")
    return NOT_HERE


def newest(lines: Iterable[list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """Audit lines of several stores, newest first (by the wall clock they were written)."""
    return sorted((e for got in lines for e in got), key=lambda e: e["clock"],
                  reverse=True)[:limit]


def _when(e: dict[str, Any]) -> float:
    return float(e["clock"] if e["t"] is None else e["t"])


def _nulls(a: Any) -> list[float | None]:
    return [None if x != x else round(x, 2) for x in a.tolist()]


__all__ = ["NOT_HERE", "Away", "Beds", "Local", "Merged", "Source", "Wards", "newest"]
