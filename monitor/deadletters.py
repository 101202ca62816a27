"""Dead letters, bounded: the first few per reason and topic in full, then counts.

A flood of bad input (a misconfigured gateway, an attacker) must not become a flood of
dead letters: they would compete with alarm events for the broker and the CPU, and a
person reading the topic learns nothing from the 5,000th copy of the same mistake.
Every rejection is still counted exactly (``wardwatch_ingest_rejected_total``); what
is not published in full is published as a per-interval summary with its count.

Dead letters never carry the payload's ``patient`` value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

from monitor.metrics import Metrics
from monitor.spool import Record
from monitor.wire import DEADLETTER_TOPIC, Rejection, deadletter_payload

_PATIENT = re.compile(rb'("patient"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\s]+)')


def without_patient(payload: bytes) -> bytes:
    """The payload with any ``patient`` value replaced, parseable or not."""
    return _PATIENT.sub(rb'\1"<removed>"', payload)


@dataclass
class _Window:
    start: float
    full: int = 0  # published in full this interval, all keys
    per_key: dict[tuple[str, str], int] = field(default_factory=dict)  # published in full
    held: dict[tuple[str, str], int] = field(default_factory=dict)  # counted only


class DeadLetters:
    """Collects rejections; :meth:`drain` hands the records to publish.

    Per ``interval_s``: at most ``per_key`` letters in full per (reason, topic), and at
    most ``max_full`` in all; the rest are counted and summarised, one record per
    reason, when the interval ends.
    """

    def __init__(self, metrics: Metrics, *, per_key: int = 3, max_full: int = 100,
                 interval_s: float = 60.0, max_topics_listed: int = 20) -> None:
        self.metrics = metrics
        self.per_key = per_key
        self.max_full = max_full
        self.interval_s = interval_s
        self.max_topics_listed = max_topics_listed
        self._win: _Window | None = None
        self._ready: list[Record] = []
        self._published = metrics.deadletters.labels("published")
        self._summarised = metrics.deadletters.labels("summarised")

    def add(self, topic: str, payload: bytes, rejection: Rejection, now: float) -> None:
        w = self._window(now)
        key = (rejection.reason, topic)
        n = w.per_key.get(key, 0)
        if n < self.per_key and w.full < self.max_full:
            w.per_key[key] = n + 1
            w.full += 1
            body = deadletter_payload(topic, without_patient(payload), rejection, now)
            self._ready.append([DEADLETTER_TOPIC, body.decode(), 1])
            self._published.inc()
        else:
            w.held[key] = w.held.get(key, 0) + 1
            self._summarised.inc()

    def _window(self, now: float) -> _Window:
        w = self._win
        if w is None or now - w.start >= self.interval_s or now < w.start:
            self._close(now)
            w = self._win = _Window(now)
        return w

    def _close(self, now: float) -> None:
        w, self._win = self._win, None
        if w is None or not w.held:
            return
        by_reason: dict[str, dict[str, int]] = {}
        for (reason, topic), n in w.held.items():
            by_reason.setdefault(reason, {})[topic] = n
        for reason, topics in sorted(by_reason.items()):
            top = sorted(topics.items(), key=lambda kv: (-kv[1], kv[0]))
            body = {
                "reason": reason,
                "summary": True,
                "count": sum(topics.values()),
                "topics": len(topics),
                "by_topic": dict(top[: self.max_topics_listed]),
                "since": w.start,
                "until": now,
            }
            self._ready.append([DEADLETTER_TOPIC, orjson.dumps(body).decode(), 1])

    def drain(self, now: float) -> list[Record]:
        """Records to publish now; ends the interval if it is over."""
        if self._win is not None and (now - self._win.start >= self.interval_s
                                      or now < self._win.start):
            self._close(now)
        out, self._ready = self._ready, []
        return out

    def flush(self, now: float) -> list[Record]:
        """Everything, the open interval's summary included (shutdown)."""
        self._close(now)
        out, self._ready = self._ready, []
        return out
