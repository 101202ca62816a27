"""The processing stage: a micro-batch of MQTT messages in, history and MQTT records out.

Decoding is per message (Python), scoring and banding are one kernel call per batch;
the alarm engine then visits only the beds where something could change. Control
messages (acknowledgements, admissions, device presence) go to the alarm engine in
arrival order, ahead of the batch's observations.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from monitor.alarms import AlarmEvent
from monitor.deadletters import DeadLetters
from monitor.errors import ConfigError
from monitor.lifecycle import AlarmEngine
from monitor.metrics import Metrics
from monitor.reconcile import reconcile
from monitor.scoring import ARTIFACT, FLATLINE, INVALID, STALE_ORDER, ScoredBatch, Scorer
from monitor.scoring.multivariate import FEATURES, Background, BedAnomaly
from monitor.spool import Record
from monitor.trends import MinuteTrends
from monitor.vitals import METRIC_IDS, METRICS
from monitor.wire import (
    DEFAULT_LIMITS,
    OBS_PREFIX,
    Command,
    Limits,
    Rejection,
    control_kind,
    decode,
    decode_command,
    parse_topic,
)

log = logging.getLogger(__name__)

_NAMES = [m.name for m in METRICS]
_CARDIO = tuple(METRIC_IDS[f] for f in FEATURES)
_IS_CARDIO = np.isin(np.arange(len(METRICS) + 1), _CARDIO)  # by metric id (+ generic)
_NOT_ACCEPTED = STALE_ORDER | INVALID | ARTIFACT | FLATLINE


def _nulls(x: np.ndarray[Any, np.dtype[np.float64]]) -> list[float | None]:
    """``x`` as a list, NaN (warming up, out of order) as None: JSON's null."""
    nan = np.isnan(x)
    if not nan.any():
        return x.tolist()  # type: ignore[no-any-return]
    out = x.astype(object)
    out[nan] = None
    return out.tolist()  # type: ignore[no-any-return]


class RateLimitedLog:
    """Logs a reason at most once per ``interval_s``, saying how many were suppressed."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, reason: str, msg: str, now: float) -> bool:
        last = self._last.get(reason)
        if last is not None and now - last < self.interval_s:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return False
        n = self._suppressed.pop(reason, 0)
        self._last[reason] = now
        extra = f" (+{n} more since last report)" if n else ""
        log.warning("rejected %s: %s%s", reason, msg, extra)
        return True


@dataclass
class Output:
    """What one micro-batch produced, for the sinks.

    ``alerts`` are the alarm events as MQTT records. With an alarm store they are
    already in its outbox (same transaction as the state change); the daemon's relay
    publishes them from there, and the list is for replays and tests.
    """

    history: list[Record] = field(default_factory=list)
    alerts: list[Record] = field(default_factory=list)
    dead: list[Record] = field(default_factory=list)


INTERNAL_WINDOW_S = 300.0  # system.internal stays active this long after the last error


class Processor:
    """Decodes, scores and turns band changes into alarm events; owns the stream state."""

    def __init__(self, metrics: Metrics, limits: Limits | None = None,
                 engine: AlarmEngine | None = None, *, replay: bool = False,
                 trend_hours: float = 24.0, trusted_clients: Sequence[str] = (),
                 pseudonym: Callable[[str], str] | None = None,
                 river: Background | None = None) -> None:
        self.metrics = metrics
        # an admission's patient identifier becomes a pseudonym before it is stored
        self.pseudonym = pseudonym
        # MQTT acks count only from these broker users (empty: from anyone)
        self.trusted_clients = frozenset(trusted_clients)
        self.replay = replay  # observation time is the alarm clock (replays, evaluation)
        self.limits = limits or DEFAULT_LIMITS
        self.scorer = Scorer()
        self.streams = self.scorer.streams
        self.alarms = engine if engine is not None else AlarmEngine()
        fired = metrics.fired
        self.alarms.on_fire = lambda ev: fired.labels(ev.ward, ev.bed, ev.code, ev.priority).inc()
        # river: its import, if it runs beside this work (the bed detector then waits)
        self.beds = BedAnomaly(background=river)
        self.bed_scores: dict[tuple[str, str], tuple[float, float]] = {}
        # per bed number (StreamTable's): the detector's last turn, −inf for none yet
        self._bed_last = np.zeros(0)
        self.trends = MinuteTrends(trend_hours)
        self._heads: list[tuple[str, str, str, str]] = []  # per stream: its rows' start
        self._heads_of = self.streams
        self.rejects = RateLimitedLog()
        self.dead = DeadLetters(metrics)
        self._internal = metrics.internal_errors
        self._last_internal = -math.inf  # clock of the newest internal error
        # labelled children, looked up once: .labels() costs microseconds per call
        self._msg = {o: metrics.messages.labels(o) for o in ("accepted", "partial", "rejected")}
        self._obs = {o: metrics.observations.labels(o)
                     for o in ("accepted", "rejected", "out_of_order")}
        metrics.views.active_alarms = self.alarms.counts
        metrics.views.bed_last_seen = self.bed_last_seen

    def process(self, messages: list[tuple[str, bytes, float]]) -> Output:
        """One micro-batch of (topic, payload, receipt wall time) → records for the sinks.

        The newest receipt time is the alarm engine's clock (acks, snoozes, escalation);
        with ``replay`` each sample's observation time is.
        """
        out = Output()
        sid: list[int] = []
        metric: list[int] = []
        ts: list[float] = []
        vs: list[float] = []
        recv: list[float] = []
        msg: list[int] = []  # each sample's message: a late sample of a later one is old
        m = self.metrics
        accepted = 0
        for k, (topic, payload, now) in enumerate(messages):
            kind = None if topic.startswith(OBS_PREFIX) else control_kind(topic)
            if kind is not None:
                self._command(decode_command(topic, payload), topic, payload, now, out)
                continue
            d = decode(topic, payload, now, self.limits)
            n_ok = len(d.metric)
            if d.rejections:
                self._msg["partial" if n_ok else "rejected"].inc()
                for rej in d.rejections:
                    m.rejected.labels(rej.reason).inc()
                    self.rejects.warning(rej.reason, f"{topic}: {rej.detail}", now)
                    self.dead.add(topic, payload, rej, now)
                n_bad = sum(1 for r in d.rejections if r.index is not None)
                if n_bad:
                    self._obs["rejected"].inc(n_bad)
            else:
                accepted += 1
            if n_ok:
                index, first = self.streams.index, d.metric[0]
                if d.metric.count(first) == n_ok:  # one metric: a device's usual batch
                    sid.extend([index(d.ward, d.bed, first)] * n_ok)
                else:
                    sid.extend([index(d.ward, d.bed, mid) for mid in d.metric])
                metric.extend(d.metric)
                ts.extend(d.t)
                vs.extend(d.v)
                recv.extend([now] * n_ok)
                msg.extend([k] * n_ok)
        if accepted:
            self._msg["accepted"].inc(accepted)
        wall = messages[-1][2]
        if not sid:
            self.alarms.flush()
            out.dead = self.dead.drain(wall)
            return out

        batch = self.scorer.score(
            np.array(sid, dtype=np.int64), np.array(metric, dtype=np.int64),
            np.array(ts), np.array(vs), wall, np.array(msg, dtype=np.int64),
        )
        stale = int(np.count_nonzero(batch.has(STALE_ORDER)))
        self._obs["accepted"].inc(len(batch) - stale)
        if stale:
            self._obs["out_of_order"].inc(stale)
        m.lag.observe_many(np.array(recv) - np.array(ts))
        self.trends.add(batch)

        out.history.extend(self._vitals(batch))
        clock = None if self.replay else wall
        self._emit([ev for _, ev in self.alarms.update(batch, self.streams, clock)], out)
        try:
            self._score_beds(batch, out)
        except Exception as exc:  # the multivariate view is secondary: history goes on
            self.internal_error("bed_scores", exc, wall, "multivariate bed scores")
        self._faults(messages, wall)
        out.dead = self.dead.drain(wall)
        return out

    def _vitals(self, batch: ScoredBatch) -> map[tuple[Any, ...]]:
        """The batch's history rows, ("v", ward, bed, metric, t, value, score, forecast),
        made by builtins that loop in C: one tuple per sample, no Python call per sample.
        """
        if self._heads_of is not self.streams:  # (a table put in its place: start over)
            self._heads, self._heads_of = [], self.streams
        heads = self._heads
        for ward, bed, mt in self.streams.keys[len(heads):]:
            heads.append(("v", ward, bed, _NAMES[mt]))
        return map(tuple.__add__, map(heads.__getitem__, batch.sid.tolist()),
                   zip(batch.t.tolist(), batch.v.tolist(), _nulls(batch.score.round(4)),
                       _nulls(batch.forecast.round(2)), strict=True))

    def reconcile(self, now: float) -> Output:
        """At start-up: resolve alarms of rules the configuration no longer raises."""
        out = Output()
        self._emit(reconcile(self.alarms, now), out)
        return out

    def tick(self, now: float, system: dict[str, float] | None = None) -> Output:
        """The clock: escalations, snoozes ending, stale streams, the pipeline self-check."""
        out = Output()
        system = dict(system or {})
        system.setdefault("internal", self.internal_recent(now))
        self._emit(self.alarms.tick(now, self.streams, system), out)
        try:
            self._bed_catch_up(out)
        except Exception as exc:  # the multivariate view is secondary
            self.internal_error("bed_scores", exc, now, "multivariate bed scores")
        self._faults([], now)
        out.dead = self.dead.drain(now)
        return out

    def _emit(self, events: list[AlarmEvent], out: Output) -> None:
        """Persist the engine's changes with their events (the store's outbox), and hand
        the events to the history sink."""
        self.alarms.flush(events)
        for ev in events:
            self.metrics.alarm_events.labels(ev.ward, ev.priority, ev.state).inc()
            out.alerts.append([ev.topic, ev.to_json().decode(), 1])
            out.history.append(["a", asdict(ev)])

    # -- failures ------------------------------------------------------------------
    def internal_error(self, stage: str, exc: BaseException, now: float, what: str,
                       topic: str = "", payload: bytes = b"") -> None:
        """Count a caught bug, dead-letter what it was working on, and keep going."""
        self._internal.labels(stage).inc()
        self._last_internal = max(self._last_internal, now)
        log.error("internal error in %s (%s); dead-lettered, going on", stage, what,
                  exc_info=exc)
        rej = Rejection("internal_error", f"{stage}: {type(exc).__name__}: {exc}"[:500])
        self.dead.add(topic or f"wardwatch/internal/{stage}", payload, rej, now)

    def internal_recent(self, now: float) -> float:
        """1.0 while an internal error happened in the last INTERNAL_WINDOW_S: the
        signal of ``system.internal``."""
        return 1.0 if now - self._last_internal < INTERNAL_WINDOW_S else 0.0

    def _faults(self, messages: list[tuple[str, bytes, float]], now: float) -> None:
        """Bugs the alarm engine caught per bed: count each, dead-letter the bed's
        messages of this batch (the samples it could not judge)."""
        faults, self.alarms.faults = self.alarms.faults, []
        if not faults:
            return
        first: dict[tuple[str, str], tuple[str, str, str]] = {}
        for stage, ward, bed, error, what in faults:
            self._internal.labels(stage).inc()
            first.setdefault((ward, bed), (stage, error, what))
        self._last_internal = max(self._last_internal, now)
        by_bed: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
        for topic, payload, _ in messages:
            wb = parse_topic(topic)
            if wb in first:
                by_bed.setdefault(wb, []).append((topic, payload))
        for (ward, bed), (stage, error, what) in first.items():
            rej = Rejection("internal_error", f"{stage}: {error} ({what})"[:500])
            for topic, payload in by_bed.get((ward, bed)) or [(f"{OBS_PREFIX}{ward}/{bed}", b"")]:
                self.dead.add(topic, payload, rej, now)

    def fail_batch(self, messages: list[tuple[str, bytes, float]], exc: BaseException,
                   ) -> Output:
        """``process`` raised: retry message by message, dead-letter the ones that fail.

        A sample already scored before the failure is seen again as out of order: it
        goes to history once more, but does not move its stream twice.
        """
        now = messages[-1][2] if messages else 0.0
        self._internal.labels("process").inc()
        self._last_internal = max(self._last_internal, now)
        log.error("internal error processing a batch of %d messages; retrying one by one",
                  len(messages), exc_info=exc)
        self.alarms.faults.clear()
        out = Output()
        for msg in messages:
            try:
                one = self.process([msg])
            except Exception as one_exc:
                self.internal_error("process", one_exc, msg[2], "one message", msg[0], msg[1])
                continue
            out.history += one.history
            out.alerts += one.alerts
            out.dead += one.dead
        out.dead += self.dead.drain(now)
        return out

    def acknowledge(self, ward: str, bed: str, request: dict[str, Any], now: float,
                    ) -> tuple[Output, str | None]:
        """An ack or snooze from the station page (already signed in and validated)."""
        out = Output()
        res = self.alarms.ack(ward, bed, request, now, client="station")
        self.metrics.commands.labels("ack", "rejected" if res.error else "accepted").inc()
        self._emit(res.events, out)
        return out, res.error

    def _command(self, cmd: Command, topic: str, payload: bytes, now: float,
                 out: Output) -> None:
        """An acknowledgement, admission or device presence message."""
        try:
            self._command_inner(cmd, topic, payload, now, out)
        except Exception as exc:  # a bug: dead-letter the command, keep its ward watched
            self.alarms.faults.clear()
            self.internal_error("command", exc, now, f"{cmd.kind} command", topic, payload)

    def _command_inner(self, cmd: Command, topic: str, payload: bytes, now: float,
                       out: Output) -> None:
        err = cmd.error
        events: list[AlarmEvent] = []
        if err is None and cmd.body:
            if cmd.kind == "ack":
                trusted = not self.trusted_clients or cmd.client in self.trusted_clients
                refuse = "" if trusted else (
                    f"broker user {cmd.client!r} is not in [acks] trusted_clients"
                    if cmd.client else
                    "no broker user: ack on wardwatch/v1/ack/{ward}/{bed}/{user}")
                res = self.alarms.ack(cmd.ward, cmd.bed, cmd.body, now, refuse=refuse,
                                      client=f"mqtt:{cmd.client}" if cmd.client else "mqtt")
                events = res.events
                if res.error:
                    err = Rejection("untrusted_client" if refuse else "unknown_alarm",
                                    res.error)
            elif cmd.kind == "status":
                events = self.alarms.device_status(cmd.ward, cmd.bed,
                                                   cmd.body["status"] == "online", now)
            elif cmd.body.get("action") == "discharge":
                events = self.alarms.discharge(cmd.ward, cmd.bed, now)
            else:
                try:
                    patient = str(cmd.body.get("patient", ""))
                    if self.pseudonym is not None:
                        patient = self.pseudonym(patient)
                    events = self.alarms.admit(cmd.ward, cmd.bed, patient,
                                               cmd.body.get("rules", {}), now)
                except ConfigError as exc:
                    err = Rejection("bad_command", str(exc)[:200])
        outcome = "rejected" if err is not None else "accepted"
        self.metrics.commands.labels(cmd.kind or "unknown", outcome).inc()
        if err is not None:
            self.rejects.warning(f"{cmd.kind}:{err.reason}", f"{topic}: {err.detail}", now)
            self.dead.add(topic, payload, err, now)
        self._emit(events, out)

    def _score_beds(self, batch: ScoredBatch, out: Output) -> None:
        """The multivariate detector, once per bed with new accepted cardiovascular samples
        whose turn has come (every ``beds.every_s`` of observation time).

        A bed that is not due, or has no stream of one of the four vitals, is passed over
        with array operations: Python runs only for beds whose turn has come. Artifacts
        never reach the detector.
        """
        self._bed_catch_up(out)
        ok = _IS_CARDIO[batch.metric] & ((batch.status & _NOT_ACCEPTED) == 0)
        if not ok.any():
            return
        st = self.streams
        if len(st.bed_keys) > self._bed_last.size:
            more = len(st.bed_keys) - self._bed_last.size
            self._bed_last = np.concatenate([self._bed_last, np.full(more, -math.inf)])
        sid, t = batch.sid[ok], batch.t[ok]
        beds = st.bed[sid]
        have = (st.bed_rows[beds][:, list(_CARDIO)] >= 0).all(axis=1)
        due = have & (t - self._bed_last[beds] >= self.beds.every_s)
        if not due.any():
            return
        newest: dict[int, float] = {}
        for b, ts in zip(beds[due].tolist(), t[due].tolist(), strict=True):
            newest[b] = max(ts, newest.get(b, -math.inf))
        for b, ts in newest.items():
            ward, bed = st.bed_keys[b]
            values = {_NAMES[mid]: float(st.value[st.bed_rows[b, mid]]) for mid in _CARDIO}
            score = self.beds.score(ward, bed, ts, values)
            self._bed_last[b] = self.beds.last_t(ward, bed)
            if score is not None:
                self._bed_score(ward, bed, ts, score, out)

    def _bed_catch_up(self, out: Output) -> None:
        """The bed vectors that waited for river's import, scored once it is there."""
        for ward, bed, ts, score in self.beds.catch_up():
            self._bed_score(ward, bed, ts, score, out)

    def _bed_score(self, ward: str, bed: str, ts: float, score: float, out: Output) -> None:
        self.bed_scores[(ward, bed)] = (ts, score)
        out.history.append(["b", ward, bed, ts, round(score, 4)])

    def restore_beds(self, blob: bytes) -> None:
        """The multivariate detectors' checkpoint; before the first batch."""
        self.beds.restore(blob)
        self._bed_last = np.array([self.beds.last_t(w, b) for w, b in self.streams.bed_keys])

    def bed_last_seen(self) -> list[tuple[str, str, float]]:
        """(ward, bed, wall time of its newest sample), for the last-seen metric."""
        seen: dict[tuple[str, str], float] = {}
        wall = self.streams.wall_seen
        for i, (ward, bed, _) in enumerate(self.streams.keys):
            key = (ward, bed)
            seen[key] = max(seen.get(key, 0.0), float(wall[i]))
        return [(w, b, t) for (w, b), t in seen.items()]
