"""The records of alarms: events as they go out on ``wardwatch/v1/alerts/{ward}/{bed}``,
each (bed, rule)'s persisted state, audit lines, and the answer to an acknowledgement.

The rules are in :mod:`monitor.ruleset`, the lifecycle that moves these in
:mod:`monitor.lifecycle`, their storage in :mod:`monitor.alarmstore`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

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


@dataclass
class GroupState:
    """One (bed, rule): when each level's condition began, and its active alarm."""

    onset: dict[str, float] = field(default_factory=dict)  # code → observation time
    alarm: AlarmEvent | None = None  # the last event published for the active alarm
    fired_at: float = 0.0  # clock when it fired or last sounded again (escalation timer)
    snooze_until: float | None = None  # acknowledged: clock when it sounds again
    acked_by: str | None = None
    ack_action: str | None = None  # ack | snooze
    latched: bool = False  # condition gone, kept until acknowledged (high priority)
    latch_logged: bool = False  # this alarm's latch is in the audit log (once per alarm)
    escalated: bool = False
    last_t: float = -math.inf  # newest observation time fed
    detail: str = ""  # what the newest sample said, for messages

    @property
    def idle(self) -> bool:
        return self.alarm is None and not self.onset

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["last_t"] = None if self.last_t == -math.inf else self.last_t
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> GroupState:
        alarm = d.get("alarm")
        return cls(
            onset={str(k): float(v) for k, v in d.get("onset", {}).items()},
            alarm=AlarmEvent(**alarm) if alarm else None,
            fired_at=float(d.get("fired_at", 0.0)),
            snooze_until=d.get("snooze_until"),
            acked_by=d.get("acked_by"),
            ack_action=d.get("ack_action"),
            latched=bool(d.get("latched", False)),
            latch_logged=bool(d.get("latch_logged", False)),
            escalated=bool(d.get("escalated", False)),
            last_t=-math.inf if d.get("last_t") is None else float(d["last_t"]),
            detail=str(d.get("detail", "")),
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log: who did what to which alarm, when and why."""

    clock: float
    ward: str
    bed: str
    alarm_id: str
    code: str
    priority: str
    action: str  # firing | acknowledged | snoozed | escalated | resolved | latched |
    #              sounded_again | admitted | discharged | rejected
    by: str
    detail: str
    #: who the sender was, as authenticated outside the message: ``station`` (signed in
    #: to the page), ``mqtt:<broker user>`` (an ack topic's last level), ``mqtt`` (the
    #: plain ack topic: unverified) or "" (wardwatch itself)
    client: str = ""
    #: the observation time of the alarm's event (simulated time in a replay or the demo):
    #: where a chart of the data marks it; None for entries without one
    t: float | None = None


@dataclass(frozen=True, slots=True)
class AckResult:
    events: list[AlarmEvent]
    error: str | None = None


class AckError(ValueError):
    """An acknowledgement that cannot be applied (unknown alarm, bad request)."""
