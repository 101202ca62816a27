"""Alarm events as they go out on ``wardwatch/v1/alerts/{ward}/{bed}``.

The rules are in :mod:`monitor.ruleset`, the lifecycle in :mod:`monitor.lifecycle`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import orjson

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
