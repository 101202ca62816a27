"""The alarm path judges only the samples that matter; it must fire exactly what judging
every sample fires.

Two engines see the same micro-batches of the same streams: one through
``Signals.update`` (the walk from flagged sample to flagged sample), one through
``Signals.reference`` (every sample, one by one). Their event sequences and audit logs
must be identical, on random streams built to cross every band, spike, flatline, arrive
late or twice, and on the simulator's patients.
"""

from __future__ import annotations

from dataclasses import astuple
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.lifecycle import AlarmEngine
from monitor.ruleset import RuleSet, parse_overrides
from monitor.scoring import Scorer
from monitor.vitals import METRIC_IDS
from simulators.patients import cohort

T0 = 1_763_856_000.0
# where each vital wanders: wide enough to cross every NEWS2 / ADA band both ways
RANGE = {"hr": (25.0, 180.0), "sbp": (60.0, 240.0), "dbp": (30.0, 130.0),
         "map": (40.0, 140.0), "glucose": (30.0, 400.0)}
Stream = tuple[str, str, str, Any, Any]  # ward, bed, metric, t, v


class Path:
    """A scorer and an alarm engine, fed micro-batches; ``reference``: every sample."""

    def __init__(self, reference: bool, ack_after: float, rules: RuleSet | None) -> None:
        self.scorer = Scorer()
        self.engine = AlarmEngine(rules, ack_after=ack_after)
        self.judge = self.engine.signals.reference if reference else self.engine.signals.update
        self.events: list[tuple[Any, ...]] = []
        self.audit: list[tuple[Any, ...]] = []

    def feed(self, rows: list[tuple[str, str, str, float, float]]) -> None:
        streams = self.scorer.streams
        sid = np.array([streams.index(w, b, METRIC_IDS[m]) for w, b, m, _, _ in rows])
        metric = np.array([METRIC_IDS[m] for _, _, m, _, _ in rows])
        t = np.array([r[3] for r in rows])
        v = np.array([r[4] for r in rows])
        batch = self.scorer.score(sid, metric, t, v, 0.0)
        for row, ev in self.judge(batch, streams):
            self.events.append((row, *astuple(ev)))
        self.audit += [astuple(a) for a in self.engine.audit]
        self.engine.flush([])


def run_both(streams: list[Stream], cuts: list[int], ack_after: float,
             rules: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Interleave the streams in arrival order, cut into micro-batches, feed both."""
    rows = [(w, b, m, float(t), float(v)) for w, b, m, ts, vs in streams
            for t, v in zip(ts, vs, strict=True)]
    arrival = np.argsort([r[3] for r in rows], kind="stable")
    rows = [rows[i] for i in arrival]
    def ruleset() -> RuleSet | None:
        return RuleSet({"*": parse_overrides(rules, "test")}) if rules else None

    new, ref = Path(False, ack_after, ruleset()), Path(True, ack_after, ruleset())
    edges = sorted({0, len(rows), *[c % (len(rows) + 1) for c in cuts]})
    for a, b in pairwise(edges):
        if b > a:
            new.feed(rows[a:b])
            ref.feed(rows[a:b])
    return new, ref


# HR and SBP near the shock index's and the NEWS2 aggregate's limits, where a normal
# value of one and an abnormal one of the other make bed-level alarms
NEAR_SHOCK = {"hr": (70.0, 125.0), "sbp": (80.0, 125.0)}


@st.composite
def vital(draw: st.DrawFn, ward: str, bed: str, metric: str,
          ranges: dict[str, tuple[float, float]] = RANGE) -> Stream:
    """A random walk in ``metric``'s range, with spikes, stuck runs, repeats, late samples."""
    n = draw(st.integers(5, 400))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lo, hi = ranges[metric]
    step = draw(st.sampled_from([1.0, 5.0, 60.0, 300.0, 900.0]))
    dt = step * rng.choice([1.0, 1.0, 1.0, 0.5, 2.0, 30.0], n)  # irregular, some gaps
    t = T0 + np.cumsum(dt)
    drift = draw(st.floats(0.0, 0.08)) * (hi - lo)
    v = np.clip(rng.uniform(lo, hi) + np.cumsum(rng.normal(0, drift, n)), lo, hi)
    for _ in range(draw(st.integers(0, 4))):  # a spike
        v[rng.integers(n)] = rng.choice([lo * 0.5, hi * 1.3, 0.0])
    if draw(st.booleans()) and n > 20:  # a stuck sensor
        a = int(rng.integers(n - 15))
        v[a:a + 15] = v[a]
    if draw(st.booleans()):  # a late or repeated sample
        k = int(rng.integers(1, n))
        j = int(rng.integers(k))
        t = np.insert(t, k, t[j])
        v = np.insert(v, k, v[j] + rng.choice([0.0, 3.0]))
    return ward, bed, metric, t, np.round(v, 1)


@st.composite
def ward(draw: st.DrawFn) -> list[Stream]:
    out = []
    for b in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            out += [draw(vital("4A", str(b + 1), m, NEAR_SHOCK)) for m in sorted(NEAR_SHOCK)]
            continue
        metrics = draw(st.sets(st.sampled_from(sorted(RANGE)), min_size=1, max_size=4))
        out += [draw(vital("4A", str(b + 1), m)) for m in sorted(metrics)]
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams=ward(), cuts=st.lists(st.integers(0, 3000), max_size=60),
       ack_after=st.sampled_from([0.0, 60.0, 120.0]))
def test_random_streams_fire_what_judging_every_sample_fires(
        streams: list[Stream], cuts: list[int], ack_after: float) -> None:
    new, ref = run_both(streams, cuts, ack_after)
    assert new.events == ref.events
    assert new.audit == ref.audit


MORE_ON = {"hr.news2.1": {"enabled": True}, "sbp.news2.1": {"enabled": True},
           "glucose.high.l1": {"enabled": True}, "hr.drift": {"enabled": True},
           "sbp.drift": {"enabled": True}}
MOVED = {"glucose.low.l1": {"threshold": 75.0}, "hr.news2.3": {"delay_s": 0}}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams=ward(), cuts=st.lists(st.integers(0, 5000), max_size=4),
       rules=st.sampled_from([MORE_ON, MOVED]))
def test_with_ward_rules_that_turn_on_more_or_move_thresholds(
        streams: list[Stream], cuts: list[int], rules: dict[str, Any]) -> None:
    new, ref = run_both(streams, cuts, 120.0, rules)
    assert new.events == ref.events
    assert new.audit == ref.audit


@pytest.mark.parametrize("seed", [3, 11])
def test_simulated_patients_fire_what_judging_every_sample_fires(seed: int) -> None:
    streams: list[Stream] = []
    for p in cohort(6, seed=seed, days=0.5):
        streams += [(p.ward, p.bed, m, t, v) for m, (t, v) in p.streams.items()]
    new, ref = run_both(streams, list(range(0, 200_000, 97)), 120.0)  # live-sized batches
    assert len(ref.events) > 10  # the cohort's episodes do alarm
    assert new.events == ref.events
    assert new.audit == ref.audit


@pytest.mark.parametrize("cut", [True, False], ids=["next batch", "same batch"])
def test_values_never_judged_count_in_bed_level_rules(cut: bool) -> None:
    # a normal HR of 87-89 for 5 min (nothing to judge), then a cuff reads SBP 85: the shock
    # index (~88/85 >= 1.0) starts at that reading, with the HR that was never judged
    hr_t = T0 + np.arange(0, 400, 5.0)
    streams: list[Stream] = [("4A", "1", "hr", hr_t, 87.0 + np.arange(hr_t.size) % 3),
                             ("4A", "1", "sbp", T0 + np.array([302.0, 362.5]),
                              np.array([85.0, 85.0]))]
    at = int(np.searchsorted(hr_t, T0 + 302.0))  # the cuff reading opens a batch, or not
    new, ref = run_both(streams, [at] if cut else [], 0.0)
    shock = [e for e in ref.events if e[5] == "shock_index.high"]
    assert shock and shock[0][8] == T0 + 362.5  # the first reading 60 s after the onset
    assert new.events == ref.events


def test_news2_part_of_quiet_at_once_is_the_per_bed_answer() -> None:
    """The vectorised NEWS2 check (every bed of a batch at once) against band_of, per
    bed: values on and around every edge, missing streams, no value yet."""
    from monitor.rules import NEWS2_PULSE, NEWS2_SBP
    from monitor.ruleset import NEWS2_PULSE_SCORE, NEWS2_SBP_SCORE
    from monitor.signals import Signals

    engine = AlarmEngine()
    signals = Signals(engine)
    scorer = Scorer()
    rng = np.random.default_rng(3)
    edges = sorted({*NEWS2_PULSE.edges, *NEWS2_SBP.edges})
    values = [np.nan, *edges, *(e + 0.5 for e in edges), *(e - 0.5 for e in edges), 0.0, 300.0]
    beds = []
    for b in range(400):
        have = rng.integers(0, 4)  # none, HR, SBP, both
        hr = scorer.streams.index("4A", str(b), METRIC_IDS["hr"]) if have & 1 else None
        sbp = scorer.streams.index("4A", str(b), METRIC_IDS["sbp"]) if have & 2 else None
        scorer.streams.index("4A", str(b), METRIC_IDS["glucose"])
        beds.append((hr, sbp))
    signals._grow(scorer.streams)
    for hr, sbp in beds:
        for row in (hr, sbp):
            if row is not None:
                signals._lat_v[row] = rng.choice(values)
    want = []
    for hr, sbp in beds:
        loud = False
        for row, rule, score in ((hr, NEWS2_PULSE, NEWS2_PULSE_SCORE),
                                 (sbp, NEWS2_SBP, NEWS2_SBP_SCORE)):
            v = np.nan if row is None else float(signals._lat_v[row])
            loud |= v == v and score[rule.band_of(v)] != 0
        want.append(loud)
    glucose = [scorer.streams.find("4A", str(b), METRIC_IDS["glucose"]) for b in range(400)]
    got = signals._scoring_news2(scorer.streams, scorer.streams.bed[glucose]).tolist()
    assert sum(want) > 50
    assert got == want
