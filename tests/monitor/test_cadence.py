"""Streams that know their cadence: the same physiology sampled as real devices sample it.

Glucose from a CGM every 1, 5 or 15 min; HR every 1, 5 or 60 s; SBP from a cuff every 5,
15 or 60 min and from an arterial line every second. Alarms must come at the same moments
of the patient's story — within one sample interval of each other, plus the rule's delay,
plus, where Hampel runs (dense streams), the run it waits before believing a step — and
forecasts must be as good, within the tolerance stated per test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.lifecycle import AlarmEngine
from monitor.scoring import ARTIFACT, GAP, Scorer
from monitor.scoring import _layout as L
from monitor.scoring.params import PARAMS
from monitor.vitals import METRIC_IDS

HAMPEL_RUN = 8  # a step is believed at its 8th sample where Hampel runs


def replay(metric: str, t: np.ndarray, v: np.ndarray) -> tuple[dict[str, float], object]:
    """First firing time of each alarm code, and the scored batch."""
    sc = Scorer()
    mid = METRIC_IDS[metric]
    sid = np.full(t.size, sc.streams.index("4A", "1", mid), dtype=np.int64)
    batch = sc.score(sid, np.full(t.size, mid, dtype=np.int64), t, v, 0.0)
    first: dict[str, float] = {}
    for _, ev in AlarmEngine(ack_after=120.0).update(batch, sc.streams):
        if ev.state == "firing":
            first.setdefault(ev.code, ev.t)
    return first, batch


# -- glucose ---------------------------------------------------------------------------

def glucose_truth(t: np.ndarray) -> np.ndarray:
    """150 mg/dL, then from 3 h a fall of ~2 mg/dL/min to a trough of 45, back after 1 h."""
    m = t / 60.0
    fall = np.clip((m - 180.0) / 52.5, 0.0, 1.0)
    rise = np.clip((m - 290.0) / 60.0, 0.0, 1.0)
    return 150.0 - 105.0 * fall * fall * (3 - 2 * fall) + 105.0 * rise


@pytest.fixture(scope="module")
def glucose_runs() -> dict[int, tuple[dict[str, float], object, np.ndarray, np.ndarray]]:
    out = {}
    for minutes in (1, 5, 15):
        rng = np.random.default_rng(minutes)
        t = np.arange(0.0, 8 * 3600.0, 60.0 * minutes)
        v = np.round(glucose_truth(t) + rng.normal(0.0, 2.0, t.size))
        first, batch = replay("glucose", t, v)
        out[minutes] = (first, batch, t, v)
    return out


def test_glucose_alarms_come_at_the_same_moments_at_1_5_and_15_min(glucose_runs: dict) -> None:
    ref, *_ = glucose_runs[5]
    assert {"glucose.low.predicted", "glucose.low.l1", "glucose.low.l2"} <= set(ref)
    for minutes, (first, *_rest) in glucose_runs.items():
        assert set(first) == set(ref), minutes
        for code, at in first.items():  # glucose rules have no delay
            assert abs(at - ref[code]) <= 60.0 * max(minutes, 5), (minutes, code)
        # the warning comes before the true glucose crosses 70, at every cadence
        fine = np.arange(0.0, 8 * 3600.0, 10.0)
        crossing = fine[np.argmax(glucose_truth(fine) < 70.0)]
        assert first["glucose.low.predicted"] < crossing, minutes


def test_a_one_minute_cgm_s_noise_is_not_a_rate_artifact(glucose_runs: dict) -> None:
    for minutes, (_, batch, *_rest) in glucose_runs.items():
        assert not batch.has(ARTIFACT).any(), minutes
        assert not batch.has(GAP).any(), minutes


def test_glucose_forecast_error_does_not_depend_on_cadence(glucose_runs: dict) -> None:
    """Mean absolute error of the 30-min forecast against the true glucose at its target
    time, over the whole story: within 50% (and 5 mg/dL) of the 5-min CGM's."""
    mae = {}
    for minutes, (_, batch, t, _) in glucose_runs.items():
        fc, at = batch.out[:, L.O_FC], batch.out[:, L.O_FC_T]
        ok = np.isfinite(fc) & (t > 3600.0)
        assert ok.sum() > 0.8 * (t > 3600.0).sum(), minutes  # forecasts at every cadence
        mae[minutes] = float(np.mean(np.abs(fc[ok] - glucose_truth(at[ok]))))
    for err in mae.values():
        assert err <= 1.5 * mae[5] + 5.0, mae


def test_a_compression_low_is_an_artifact_at_every_cadence() -> None:
    for minutes in (1, 5):
        t = np.arange(0.0, 4 * 3600.0, 60.0 * minutes)
        v = 140.0 + 0.0 * t + np.where(np.arange(t.size) % 2 == 0, 0.0, 1.0)
        dip = (t >= 7200.0) & (t < 7200.0 + 60.0 * max(minutes, 3))  # 40 down, then back
        v[dip] -= 70.0
        first, batch = replay("glucose", t, v)
        assert not [c for c in first if c.startswith("glucose.low")], minutes
        assert batch.has(ARTIFACT)[dip].all(), minutes


# -- heart rate ------------------------------------------------------------------------

def hr_truth(t: np.ndarray) -> np.ndarray:
    return np.where((t >= 3600.0) & (t < 3600.0 + 1800.0), 140.0, 75.0)


def test_hr_alarms_agree_at_1_5_and_60_s() -> None:
    ref_step = 3600.0
    for secs in (1, 5, 60):
        rng = np.random.default_rng(secs)
        t = np.arange(0.0, 3 * 3600.0, float(secs))
        v = np.round(hr_truth(t) + rng.normal(0.0, 1.0, t.size))
        first, _ = replay("hr", t, v)
        assert "hr.news2.3" in first, secs
        delay = 30.0  # hr.news2.3
        confirm = HAMPEL_RUN * secs if secs * 15 <= PARAMS["hr"].roll_s * 2 else 0.0
        late = first["hr.news2.3"] - ref_step
        assert 0.0 <= late <= secs + delay + confirm, (secs, late)
        assert not [c for c in first if c.startswith("hr.") and first[c] < ref_step], secs


def test_hr_once_a_minute_is_not_stale_between_samples() -> None:
    sc = Scorer()
    engine = AlarmEngine()
    s = sc.streams.index("4A", "1", METRIC_IDS["hr"])
    stale = []
    for k in range(30):
        t = 60.0 * k
        sc.score(np.array([s]), np.array([METRIC_IDS["hr"]]), np.array([t]),
                 np.array([75.0 + k % 3]), now=t)
        for wait in (30.0, 59.0, 65.0, 90.0):  # the wall clock between samples
            stale += [e.code for e in engine.tick(t + wait, sc.streams)]
    assert stale == []
    assert sc.streams.cadence[s] == pytest.approx(60.0)
    # silent for 3 intervals: now it is stale
    assert [e.code for e in engine.tick(29 * 60.0 + 181.0, sc.streams)] == ["hr.stale"]


# -- blood pressure ----------------------------------------------------------------------

def sbp_truth(t: np.ndarray) -> np.ndarray:
    """120 mm[Hg]; from 2 h a fall of 0.5 mm[Hg]/min to 70."""
    return 120.0 - np.clip((t - 7200.0) / 120.0, 0.0, 50.0)


def test_sbp_alarms_agree_from_a_cuff_every_5_15_60_min_and_an_arterial_line() -> None:
    crossing = 7200.0 + 30 * 120.0  # SBP reaches 90
    times = {}
    for secs in (1, 300, 900, 3600):
        rng = np.random.default_rng(secs)
        t = np.arange(0.0, 6 * 3600.0, float(secs)) + (0.0 if secs == 1 else 60.0)
        v = np.round(sbp_truth(t) + rng.normal(0.0, 2.0 if secs > 1 else 1.0, t.size))
        first, _ = replay("sbp", t, v)
        assert "sbp.news2.3" in first, secs
        times[secs] = first["sbp.news2.3"]
        confirm = HAMPEL_RUN * secs if secs <= PARAMS["sbp"].dense_s else 0.0
        late = times[secs] - crossing
        # noise may cross a little early; at worst one interval (and Hampel's run) late
        assert -600.0 <= late <= secs + confirm + 60.0, (secs, late)


def test_an_arterial_line_s_flush_and_zeroing_raise_no_clinical_alarm() -> None:
    rng = np.random.default_rng(9)
    t = np.arange(0.0, 2 * 3600.0, 1.0)
    v = np.round(120.0 + rng.normal(0.0, 1.5, t.size))
    flush = (t >= 1800.0) & (t < 1804.0)  # a fast flush: the pressure bag, ~300 mm[Hg]
    zero = (t >= 3600.0) & (t < 3640.0)  # zeroing: the transducer open to air for 40 s
    v[flush] = 300.0
    v[zero] = 0.0
    first, batch = replay("sbp", t, v)
    assert first == {}
    assert batch.has(ARTIFACT)[flush].all()
    assert batch.has(ARTIFACT)[zero].all()
    # and the line is believed again right after
    after = (t >= 3640.0 + HAMPEL_RUN) & (t < 3700.0)
    assert not batch.has(ARTIFACT)[after].any()
    assert math.isclose(float(np.nanmedian(batch.out[after, L.O_LEVEL])), 120.0, abs_tol=3.0)
