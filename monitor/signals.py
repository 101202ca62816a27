"""From scored samples and the clock to the signals the alarm rules watch.

For each batch, :class:`Signals` finds the beds where something could change and feeds
their samples, in time order, to the engine's state machines: a vital's value, its
predicted time to a threshold, its slope, minutes since a drift decision, the NEWS2
aggregate and shock index of the bed, flatline flags; and on the clock, the age of
every stream. The state machines themselves are in :mod:`monitor.lifecycle`.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.alarms import AlarmEvent
from monitor.rules import NEWS2_PULSE, NEWS2_SBP, RULES
from monitor.ruleset import (
    DEFAULT_RULES,
    NEWS2_ABSENT,
    NEWS2_PULSE_SCORE,
    NEWS2_SBP_SCORE,
    BedRules,
    Level,
    Rule,
)
from monitor.scoring import (
    ARTIFACT,
    DRIFT,
    FLATLINE,
    INVALID,
    STALE_ORDER,
    ScoredBatch,
    StreamTable,
)
from monitor.scoring import _layout as L
from monitor.scoring.params import PARAMS
from monitor.vitals import METRIC_IDS, METRICS

if TYPE_CHECKING:
    from monitor.lifecycle import AlarmEngine

BedKey = tuple[str, str]

_NAMES = [m.name for m in METRICS]
_SPEC = {m.name: m for m in METRICS}
_FRESH_S = {m.name: PARAMS[m.name].gap_s for m in METRICS}  # NEWS2 / shock index inputs
# per metric id (and generic, last): the band in which it raises nothing, and the slope
# beyond which a sample may matter to a rate rule
_NORMAL_BAND = np.array([
    next(b for b, band in enumerate(RULES[i].bands) if band.code is None) if i in RULES else 0
    for i in range(len(METRICS) + 1)
])
# the value rule's level at a predicted-crossing threshold: once a value meets it, the
# predictive alarm has done its job and the value alarm takes over
_REACHED: dict[tuple[str, str], Level] = {
    (sig, r.source): lv for r in DEFAULT_RULES if r.signal == "value"
    for sig, thr, ops in (("tlo", PARAMS[r.source].low, ("<", "<=")),
                          ("thi", PARAMS[r.source].high, (">", ">=")))
    for lv in r.levels if lv.threshold == thr and lv.op in ops
}
# the middle of each metric's normal band: a drift is news when it heads for a limit
_MIDDLE: dict[str, float] = {
    METRICS[i].name: (r.edges[n - 1] + r.edges[n]) / 2 for i, r in RULES.items()
    for n in [next(b for b, band in enumerate(r.bands) if band.code is None)]
    if 0 < n < len(r.edges)
}
STALE_CADENCES = 3.0  # a stream is stale after this many of its own intervals at least
_SLOPE_OF_NOTE = np.array([2.0 if m.name == "glucose" else np.inf for m in METRICS] + [np.inf])


_HR, _SBP = METRIC_IDS["hr"], METRIC_IDS["sbp"]
# NEWS2's pulse and systolic bands as arrays (band_of on many values at once), and
# whether each band scores
_NEWS2_ARRAYS = {r.metric: (np.array(r.edges), np.array(r.upper), np.asarray(score) != 0)
                 for r, score in ((NEWS2_PULSE, NEWS2_PULSE_SCORE), (NEWS2_SBP, NEWS2_SBP_SCORE))}
_NOT_A_VALUE = ARTIFACT | FLATLINE | STALE_ORDER | INVALID  # not a stream's newest value


class _Walk:
    """One bed's samples in a batch: ``pos`` their positions in the batch's time order,
    ``marks`` the indices in ``pos`` of its flagged samples (both ascending)."""

    __slots__ = ("bed", "marks", "pos", "ward")

    def __init__(self, ward: str, bed: str, pos: Any, marks: Any) -> None:
        self.ward, self.bed, self.pos, self.marks = ward, bed, pos, marks


class _Columns:
    """A batch's columns in its time order, read as Python values a block at a time:
    the walk touches few rows of a long batch, and most rows of a short one."""

    BLOCK = 1024
    __slots__ = ("_blocks", "_cols", "_rows")

    def __init__(self, batch: ScoredBatch, rows: Any) -> None:
        self._cols = (batch.sid, batch.t, batch.v, batch.status, batch.out[:, L.O_TLO],
                      batch.out[:, L.O_THI], batch.out[:, L.O_SLOPE], batch.out[:, L.O_FC])
        self._rows = rows
        self._blocks: dict[int, list[tuple[Any, ...]]] = {}

    def __getitem__(self, p: int) -> tuple[Any, ...]:
        """(sid, t, v, status, tlo, thi, slope, forecast) of position ``p``."""
        b, i = divmod(p, self.BLOCK)
        block = self._blocks.get(b)
        if block is None:
            rows = self._rows[b * self.BLOCK:(b + 1) * self.BLOCK]
            block = list(zip(*(c[rows].tolist() for c in self._cols), strict=True))
            self._blocks[b] = block
        return block[i]


class Signals:
    """The engine's inputs: per batch, the samples of beds that need a look; per tick,
    stream ages. Keeps the newest accepted value per stream (bed-level rules), the last
    drift decisions, and which streams the current admission expects."""

    def __init__(self, engine: AlarmEngine) -> None:
        self.engine = engine
        # newest accepted (t, v) per stream row, as of the sample being judged
        self._lat_t: Any = np.empty(0)
        self._lat_v: Any = np.empty(0)
        self._streams: StreamTable | None = None
        self.drift: dict[tuple[str, str, str], tuple[float, float]] = {}  # last decision t, slope
        # clock of the bed's last admission or discharge: streams not heard from since
        # are the previous patient's, and are not expected (no stale-data alarm)
        self.monitored_since: dict[BedKey, float] = {}
        self._limits: Any = np.empty(0)
        self._limits_at = (-1, -1)

    def forget(self, ward: str, bed: str, clock: float) -> None:
        """A new admission or a discharge: the bed's old values and streams are history."""
        self.monitored_since[(ward, bed)] = clock
        if self._streams is not None:
            for m in range(len(METRICS)):
                s = self._streams.find(ward, bed, m)
                if s is not None and s < self._lat_t.size:
                    self._lat_t[s] = np.nan

    def update(self, batch: ScoredBatch, streams: StreamTable,
               clock: float | None = None) -> list[tuple[int, AlarmEvent]]:
        """(row in ``batch``, event) for every change ``batch`` causes, in time order.

        ``clock`` None: a replay, where observation time is the clock.

        Only the samples where something could change are judged one by one: a bed is
        *quiet* while it has no live condition or alarm, no recent drift decision, no
        custom thresholds and no HR or SBP outside its normal band, and a quiet bed's
        next sample matters only if it is *flagged*: outside the normal band, flagged by
        the kernel, predicted to cross within the hour, or changing fast. So each bed is
        walked from flagged sample to flagged sample, sample by sample only while it is
        not quiet; the samples in between only refresh its newest values. This gives
        the same events as judging every sample (``reference``, the property test's
        reference) at the cost of the samples that matter.
        """
        return self._update(batch, streams, clock, reference=False)

    def reference(self, batch: ScoredBatch, streams: StreamTable,
                  clock: float | None = None) -> list[tuple[int, AlarmEvent]]:
        """:meth:`update` judging every sample: the plain reference for tests."""
        return self._update(batch, streams, clock, reference=True)

    def _update(self, batch: ScoredBatch, streams: StreamTable, clock: float | None,
                reference: bool) -> list[tuple[int, AlarmEvent]]:
        n = len(batch)
        if n == 0:
            return []
        keys = streams.keys
        self._grow(streams)
        known = batch.metric < len(METRICS)  # generic streams raise nothing
        metric = np.where(known, batch.metric, len(METRICS))
        flagged = ((batch.band != _NORMAL_BAND[metric])
                   | ((batch.status & (FLATLINE | DRIFT)) != 0)
                   | (batch.out[:, L.O_TLO] <= 3600.0) | (batch.out[:, L.O_THI] <= 3600.0)
                   | (np.abs(batch.out[:, L.O_SLOPE]) >= _SLOPE_OF_NOTE[metric])) & known
        # every known sample in time order (stable: a batch's order breaks ties), and
        # per bed, where its samples and its flagged samples stand in that order
        rows = np.flatnonzero(known)
        rows = rows[np.argsort(batch.t[rows], kind="stable")]
        if rows.size == 0:
            return []
        sid = batch.sid[rows]
        bid = streams.bed[sid]
        order = np.argsort(bid, kind="stable")  # per bed, positions in time order
        starts = np.flatnonzero(np.r_[True, np.diff(bid[order]) != 0])
        # beds with no flagged sample that are quiet now stay quiet all batch: they only
        # refresh their newest values, all at once; the rest are walked
        n_flagged = np.add.reduceat(flagged[rows[order]], starts)
        ends = np.r_[starts[1:], order.size]
        # NEWS2's share of _quiet for every bed at once; the rest per bed below
        loud = self._scoring_news2(streams, bid[order[starts]]) | (n_flagged != 0) | reference
        walks: list[_Walk] = []
        still: list[Any] = []
        for a, b, lo in zip(starts.tolist(), ends.tolist(), loud.tolist(), strict=True):
            ward, bed, _ = keys[int(sid[order[a]])]
            part = order[a:b]
            if not lo and self._quiet(ward, bed, news2=False):
                still.append(part)
                continue
            walks.append(_Walk(ward, bed, part, np.flatnonzero(flagged[rows[part]])))
        if still:
            self._refresh(batch, rows[np.sort(np.concatenate(still))])
        cols = _Columns(batch, rows)
        events: list[tuple[int, int, AlarmEvent]] = []
        heap: list[tuple[int, int, int]] = []  # (position, walk, index in its pos)
        for w, walk in enumerate(walks):
            nxt = 0 if reference else self._next(walk, -1, batch, rows)
            if nxt is not None:
                heapq.heappush(heap, (int(walk.pos[nxt]), w, nxt))
        while heap:
            p, w, k = heapq.heappop(heap)
            walk = walks[w]
            for ev in self._row(cols, p, keys, clock):
                events.append((p, len(events), ev))
            nxt = k + 1 if reference else self._next(walk, k, batch, rows)
            if nxt is not None and nxt < walk.pos.size:
                heapq.heappush(heap, (int(walk.pos[nxt]), w, nxt))
        events.sort(key=lambda e: (e[2].t, e[0], e[1]))
        return [(int(rows[p]), ev) for p, _, ev in events]

    def _scoring_news2(self, streams: StreamTable, beds: Any) -> Any:
        """Per bed number: whether its newest HR or SBP scores in NEWS2 (the vectorised
        last part of :meth:`_quiet`)."""
        out = np.zeros(beds.size, dtype=np.bool_)
        for mid, (edges, upper, scores) in _NEWS2_ARRAYS.items():
            rows = streams.bed_rows[beds, mid]
            v = np.where(rows >= 0, self._lat_v[np.maximum(rows, 0)], np.nan)[:, None]
            band = ((v > edges) | (upper & (v == edges))).sum(axis=1)
            out |= scores[band] & ~np.isnan(v[:, 0])
        return out

    def _next(self, walk: _Walk, k: int, batch: ScoredBatch, rows: Any) -> int | None:
        """The index (in ``walk.pos``) of the bed's next sample to judge after index
        ``k``; the samples skipped on the way refresh the bed's newest values."""
        if k + 1 >= walk.pos.size:
            return None
        if not self._quiet(walk.ward, walk.bed):
            return k + 1
        j = int(np.searchsorted(walk.marks, k, side="right"))
        nxt = int(walk.marks[j]) if j < walk.marks.size else walk.pos.size
        if nxt > k + 1:
            self._refresh(batch, rows[walk.pos[k + 1:nxt]])
        return nxt if nxt < walk.pos.size else None

    def _refresh(self, batch: ScoredBatch, skipped: Any) -> None:
        """The newest accepted value of each stream among ``skipped`` (batch rows in
        time order), as judging them would have left it."""
        ok = skipped[(batch.status[skipped] & _NOT_A_VALUE) == 0]
        if ok.size:
            last = ok[::-1]
            s, first = np.unique(batch.sid[last], return_index=True)
            self._lat_t[s] = batch.t[last[first]]
            self._lat_v[s] = batch.v[last[first]]

    def _quiet(self, ward: str, bed: str, news2: bool = True) -> bool:
        """Whether no sample of the bed in its normal band could change anything
        (``news2`` False: its HR and SBP already known not to score)."""
        key = (ward, bed)
        if key in self.engine.hot or self.engine.rules.for_bed(ward, bed).custom:
            return False
        if self.drift and any((ward, bed, name) in self.drift for name in _NAMES):
            return False
        streams = self._streams
        # an abnormal HR or SBP: a normal one makes bed-level news
        if news2 and streams is not None:
            for m, band, score in ((_HR, NEWS2_PULSE, NEWS2_PULSE_SCORE),
                                   (_SBP, NEWS2_SBP, NEWS2_SBP_SCORE)):
                s = streams.find(ward, bed, m)
                if s is not None:
                    v = float(self._lat_v[s])
                    if v == v and score[band.band_of(v)] != 0:
                        return False
        return True

    def _grow(self, streams: StreamTable) -> None:
        self._streams = streams
        n = len(streams)
        if n > self._lat_t.size:
            size = max(256, 2 * n)
            t, v = np.full(size, np.nan), np.full(size, np.nan)
            t[:self._lat_t.size] = self._lat_t
            v[:self._lat_v.size] = self._lat_v
            self._lat_t, self._lat_v = t, v

    def _row(self, c: _Columns, p: int, keys: list[tuple[str, str, int]],
             clock: float | None) -> list[AlarmEvent]:
        """Every event the sample at position ``p`` causes."""
        sid, t, v, st, tlo, thi, slope, fc = c[p]
        if st & (STALE_ORDER | INVALID):
            return []
        ward, bed, mid = keys[sid]
        try:
            return self._sample(ward, bed, mid, sid, t, v, st, tlo, thi, slope, fc, clock)
        except Exception as exc:  # one bed's fault must not stop the others
            self.engine.fault("alarms", ward, bed, exc, f"{_NAMES[mid]} sample at t={t}")
            return []

    def _sample(self, ward: str, bed: str, mid: int, sid: int, t: float, v: float, st: int,
                tlo: float, thi: float, slope: float, fc: float,
                clock: float | None) -> list[AlarmEvent]:
        """Every rule one accepted (or flagged) sample feeds."""
        name = _NAMES[mid]
        br = self.engine.rules.for_bed(ward, bed)
        now = t if clock is None else clock
        fcast = None if fc != fc else round(fc, 2)
        evs: list[AlarmEvent] = []
        off = (ward, bed, "device.offline")
        if off in self.engine.groups:  # data from the bed: the device is back
            since = max(t, self.engine.groups[off].last_t)
            for rule in br.get("offline"):  # none if disabled: reconcile() ended it
                evs += self.engine.feed(off, rule, since, 0.0, now, 0.0, None,
                                        "bedside device sending again")
        flat = 1.0 if st & FLATLINE else 0.0
        for rule in br.get("flat", name):
            evs += self.engine.feed((ward, bed, rule.name), rule, t, flat, now, v, None,
                             f"{_SPEC[name].label} {_fmt(v)} {_SPEC[name].unit}")
        if not st & (ARTIFACT | FLATLINE):
            self._lat_t[sid] = t
            self._lat_v[sid] = v
            evs += self._accepted(br, ward, bed, name, t, v, st, (tlo, thi), slope,
                                  fcast, now)
        return evs

    def _accepted(self, br: BedRules, ward: str, bed: str, name: str, t: float, v: float,
                  st: int, crossing: tuple[float, float], slope: float, fc: float | None,
                  now: float) -> list[AlarmEvent]:
        spec = _SPEC[name]
        shown = f"{spec.label} {_fmt(v)} {spec.unit}"
        evs: list[AlarmEvent] = []
        value_rules = br.get("value", name)
        for rule in value_rules:
            evs += self.engine.feed((ward, bed, rule.name), rule, t, v, now, v, fc, shown)
        for signal, secs in zip(("tlo", "thi"), crossing, strict=True):
            for rule in br.get(signal, name):
                reached = _REACHED.get((signal, name))
                taken = reached is not None and self._alarm_at_or_beyond(
                    ward, bed, value_rules, reached.code)
                if reached is not None and (taken or reached.enters(v)):
                    # The value alarm takes over once it is active; while its own delay
                    # runs, a live prediction holds (and a new one does not start).
                    gs = self.engine.groups.get((ward, bed, rule.name))
                    if taken or gs is None or gs.alarm is None:
                        minutes, note = math.inf, f"{shown}: threshold reached"
                    else:
                        minutes, note = 0.0, f"{shown}: threshold reached, {reached.code} pending"
                else:
                    minutes = secs / 60.0 if secs == secs else math.inf
                    trend = f", {slope:+.1f} {spec.unit}/min" if slope == slope else ""
                    note = (f"{shown}{trend}, forecast {_fmt(fc) if fc is not None else '—'}"
                            f" at {PARAMS[name].horizon_s / 60:g} min")
                evs += self.engine.feed((ward, bed, rule.name), rule, t, minutes, now, v, fc,
                                        note)
        for rule in br.get("slope", name):
            evs += self.engine.feed((ward, bed, rule.name), rule, t, slope, now, v, fc,
                             f"{shown}, {slope:+.1f} {spec.unit}/min")
        drift_rules = br.get("drift", name)
        if drift_rules:
            # A drift is news only while no value alarm of the metric is pending or
            # active: a step into an alarming band is that alarm's, not a second one.
            dk = (ward, bed, name)
            mid = _MIDDLE.get(name, math.nan)
            if st & DRIFT and ((slope > 0 and v > mid) or (slope < 0 and v < mid)):
                self.drift[dk] = (t, slope)  # heading for a limit of the normal band
            took_over = any((ward, bed, r.name) in self.engine.groups for r in value_rules)
            if took_over:
                self.drift.pop(dk, None)
            last = self.drift.get(dk)
            if last is None and any((ward, bed, r.name) in self.engine.groups for r in drift_rules):
                last = (-math.inf, 0.0)
            if last is not None:
                age = (t - last[0]) / 60.0
                way = "up" if last[1] > 0 else "down" if last[1] < 0 else ""
                note = (f"{shown}: a value alarm took over" if took_over
                        else f"{shown}, drifting {way}".rstrip(", "))
                for rule in drift_rules:
                    evs += self.engine.feed((ward, bed, rule.name), rule, t, age, now, v, fc, note)
                if age > 24 * 60:
                    self.drift.pop(dk, None)
        if name in ("hr", "sbp"):
            evs += self._bed_level(br, ward, bed, t, now)
        return evs

    def _alarm_at_or_beyond(self, ward: str, bed: str, rules: tuple[Rule, ...],
                            code: str) -> bool:
        """Whether a value rule's active alarm (latched too) is ``code`` or more severe."""
        for rule in rules:
            gs = self.engine.groups.get((ward, bed, rule.name))
            at = rule.level_index(code)
            if gs is not None and gs.alarm is not None and at is not None:
                cur = rule.level_index(gs.alarm.code)
                if cur is not None and cur >= at:
                    return True
        return False

    def _bed_level(self, br: BedRules, ward: str, bed: str, t: float,
                   now: float) -> list[AlarmEvent]:
        fresh: dict[str, float] = {}
        streams = self._streams
        for m in ("hr", "sbp"):
            s = None if streams is None else streams.find(ward, bed, METRIC_IDS[m])
            if s is None or streams is None:
                continue
            # fresh for the metric's gap, or a few of the stream's own intervals (an
            # hourly cuff's value still counts half an hour on)
            cad = float(streams.cadence[s])
            fresh_s = _FRESH_S[m] if cad != cad else max(_FRESH_S[m], STALE_CADENCES * cad)
            if t - self._lat_t[s] <= fresh_s:  # NaN: never seen
                fresh[m] = float(self._lat_v[s])
        evs: list[AlarmEvent] = []
        parts = []
        total = 0
        if "hr" in fresh:
            s = NEWS2_PULSE_SCORE[NEWS2_PULSE.band_of(fresh["hr"])]
            total += s
            parts.append(f"pulse {s}")
        if "sbp" in fresh:
            s = NEWS2_SBP_SCORE[NEWS2_SBP.band_of(fresh["sbp"])]
            total += s
            parts.append(f"SBP {s}")
        for rule in br.get("news2"):
            x = float(total)
            evs += self.engine.feed((ward, bed, rule.name), rule, t, x, now, x, None,
                                    f"NEWS2 partial aggregate {total} ({', '.join(parts)}; "
                                    f"not monitored: {', '.join(NEWS2_ABSENT)})")
        if "hr" in fresh and "sbp" in fresh and fresh["sbp"] > 0:
            si = fresh["hr"] / fresh["sbp"]
            for rule in br.get("shock"):
                evs += self.engine.feed((ward, bed, rule.name), rule, t, si, now, round(si, 2),
                                        None, f"shock index {si:.2f} (HR {_fmt(fresh['hr'])}"
                                              f" / SBP {_fmt(fresh['sbp'])})")
        return evs

    # -- the clock -----------------------------------------------------------------
    def stale(self, clock: float, streams: StreamTable) -> list[AlarmEvent]:
        n = len(streams)
        if n == 0:
            return []
        seen = streams.wall_seen[:n]
        # a stream is stale past its rule's limit or STALE_CADENCES of its own interval,
        # whichever is longer: an HR sent once a minute is not stale between samples
        limit = np.fmax(self._stale_limits(streams), STALE_CADENCES * streams.cadence[:n])
        age = clock - seen
        cand = set(np.flatnonzero((age > limit) & (seen > 0)).tolist())
        groups = self.engine.groups
        cand |= {i for i, k in enumerate(streams.keys)
                 if k[2] < len(METRICS) and (k[0], k[1], f"{_NAMES[k[2]]}.stale") in groups}
        events: list[AlarmEvent] = []
        for i in sorted(cand):
            ward, bed, mid = streams.keys[i]
            if self.monitored_since.get((ward, bed), -math.inf) >= seen[i]:
                continue
            try:
                events += self._stale_one(ward, bed, _NAMES[mid], float(age[i]), clock)
            except Exception as exc:
                self.engine.fault("clock", ward, bed, exc, f"{_NAMES[mid]} staleness")
        return events

    def _stale_one(self, ward: str, bed: str, name: str, age: float,
                   clock: float) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        for rule in self.engine.rules.for_bed(ward, bed).get("stale", name):
            events += self.engine.feed((ward, bed, rule.name), rule, clock, age, clock,
                                       round(age), None,
                                       f"{_SPEC[name].label}: last sample {age / 60:.1f} min ago")
        return events

    def _stale_limits(self, streams: StreamTable) -> Any:
        """Per stream, the age at which its ``<metric>.stale`` rule fires (inf: none)."""
        stamp = (len(streams), self.engine.rules.version)
        if self._limits_at != stamp:
            limits = np.full(len(streams), np.inf)
            for i, (ward, bed, mid) in enumerate(streams.keys):
                if mid < len(METRICS):
                    rules = self.engine.rules.for_bed(ward, bed).get("stale", _NAMES[mid])
                    if rules:
                        limits[i] = rules[0].levels[0].threshold
            self._limits, self._limits_at = limits, stamp
        return self._limits


def _fmt(v: float) -> str:
    """A vital as a person reads it: whole numbers from 10 up, one decimal below."""
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}"
