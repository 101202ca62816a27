"""Alarms from band changes: one active alarm per stream, fired and resolved on band edges.

This is the first lifecycle: an alarm fires when a stream enters a band that carries
an alarm code, and resolves when it leaves it (a move between two alarming bands
resolves the old one and fires the new one). Delays, latching, acknowledgement and
escalation build on it (issue #4).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, replace

import numpy as np
import orjson

from monitor.rules import RULES, band
from monitor.scoring import BAND_CHANGED, ScoredBatch, StreamTable
from monitor.vitals import METRICS
from monitor.wire import ALERTS_TOPIC

PRIORITIES = ("high", "medium", "low")


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One change of one alarm, exactly the alert-topic JSON of the wire contract."""

    id: str
    ward: str
    bed: str
    metric: str
    code: str
    priority: str
    state: str  # firing | acknowledged | escalated | resolved
    t: float  # observation time of the sample that caused the change
    value: float
    threshold: float | None
    forecast: float | None
    message: str

    @property
    def topic(self) -> str:
        return ALERTS_TOPIC.format(ward=self.ward, bed=self.bed)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


def alarm_id(ward: str, bed: str, code: str, onset: float) -> str:
    """A stable id: the same stream replayed gives the same ids."""
    raw = f"{ward}/{bed}/{code}/{onset:.3f}".encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


class AlarmBook:
    """The active alarms, one per stream at most, and the events that change them."""

    def __init__(self) -> None:
        self.active: dict[tuple[str, str, int], AlarmEvent] = {}

    def update(self, batch: ScoredBatch, streams: StreamTable) -> list[AlarmEvent]:
        """Events for every band change in ``batch``, in observation-time order."""
        return [ev for _, ev in self.update_indexed(batch, streams)]

    def update_indexed(self, batch: ScoredBatch,
                       streams: StreamTable) -> list[tuple[int, AlarmEvent]]:
        """(row in ``batch``, event) for every band change, in observation-time order."""
        events: list[tuple[int, AlarmEvent]] = []
        for i in np.flatnonzero(batch.has(BAND_CHANGED)):
            if int(batch.metric[i]) not in RULES:  # no band rule (generic): nothing to alarm
                continue
            key = streams.keys[int(batch.sid[i])]
            fc = float(batch.forecast[i])
            for ev in self._change(key, int(batch.band[i]), float(batch.t[i]),
                                   float(batch.v[i]), None if fc != fc else round(fc, 2)):
                events.append((int(i), ev))
        events.sort(key=lambda ie: ie[1].t)
        return events

    def _change(self, key: tuple[str, str, int], new: int, t: float, v: float,
                forecast: float | None) -> list[AlarmEvent]:
        ward, bed, metric = key
        spec = METRICS[metric]
        out: list[AlarmEvent] = []
        old = self.active.pop(key, None)
        if old is not None:
            msg = f"{spec.label} {v:g} {spec.unit}: resolved — {old.message.split(': ', 1)[-1]}"
            out.append(replace(old, state="resolved", t=t, value=v, message=msg))
        b = band(metric, new)
        if b.code is not None and b.priority is not None:
            ev = AlarmEvent(
                id=alarm_id(ward, bed, b.code, t),
                ward=ward,
                bed=bed,
                metric=spec.name,
                code=b.code,
                priority=b.priority,
                state="firing",
                t=t,
                value=v,
                threshold=b.threshold,
                forecast=forecast,
                message=f"{spec.label} {v:g} {spec.unit}: {b.text}",
            )
            self.active[key] = ev
            out.append(ev)
        return out

    def counts(self) -> Counter[tuple[str, str]]:
        """Active alarms by (ward, priority)."""
        return Counter((a.ward, a.priority) for a in self.active.values())
