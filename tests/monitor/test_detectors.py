"""Seeded HR stream with known events: exactly where each detector fires, and where not.

HR every 5 s around 75 /min (noise sd 1):
  400        a single 250 /min motion spike
  500-559    a 5-minute dropout (no samples)
  700-780    a stuck sensor: the same value 81 times (6 min 40 s)
  900-1099   a real step up to 115 /min, then back to 75
  1200-1499  a noise-free ramp of +1.2 /min per minute, 75 → 105
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor.scoring import ARTIFACT, BAND_CHANGED, DRIFT, FLATLINE, GAP, ScoredBatch, Scorer
from monitor.scoring import _layout as L
from monitor.vitals import HR


@pytest.fixture(scope="module")
def stream() -> tuple[np.ndarray, np.ndarray, ScoredBatch]:
    rng = np.random.default_rng(2026)
    n = 1500
    t = np.arange(n) * 5.0
    v = np.round(75 + rng.normal(0, 1.0, n), 1)
    v[400] = 250.0
    v[700:781] = v[700]
    v[900:1100] += 40
    v[1200:] = 75 + 0.1 * np.arange(n - 1200)
    keep = np.ones(n, dtype=bool)
    keep[500:560] = False
    sc = Scorer()
    s = sc.streams.index("4A", "1", HR)
    idx = np.flatnonzero(keep)
    b = sc.score(np.full(idx.size, s), np.full(idx.size, HR), t[idx], v[idx], 0.0)
    # index the results by the original sample number
    return idx, v, b


def where(idx: np.ndarray, b: ScoredBatch, flag: int) -> list[int]:
    return idx[b.has(flag)].tolist()


def test_spike_and_step_onsets_are_artifacts_and_nothing_else(stream: tuple) -> None:
    idx, _, b = stream
    # The 60 s window at 5 s holds the 13 samples before each one: a real step is
    # believed at its 8th sample, once the 7 before it outvote 6 old; a spike never is.
    assert where(idx, b, ARTIFACT) == [400, *range(900, 907), *range(1100, 1107)]


def test_spike_fires_nothing(stream: tuple) -> None:
    idx, _, b = stream
    i = int(np.flatnonzero(idx == 400)[0])
    assert not b.has(BAND_CHANGED)[i]
    assert b.band[i] == 2
    assert b.out[i, L.O_LEVEL] < 80  # the spike taught the baseline nothing


def test_dropout_is_flagged_on_the_first_sample_after_it(stream: tuple) -> None:
    idx, _, b = stream
    assert where(idx, b, GAP) == [560]


def test_flatline_after_five_minutes_of_identical_values(stream: tuple) -> None:
    idx, _, b = stream
    assert where(idx, b, FLATLINE) == list(range(760, 781))  # 300 s after 700


def test_bands_change_exactly_where_accepted_values_cross(stream: tuple) -> None:
    idx, v, b = stream
    changes = where(idx, b, BAND_CHANGED)
    ramp_cross = 1200 + int(np.flatnonzero(v[1200:] > 90)[0])
    assert changes == [0, 907, 1107, ramp_cross]
    assert b.band[idx == 907].item() == 4  # 115: NEWS2 pulse subscore 2
    assert b.band[idx == ramp_cross].item() == 3


def test_cusum_decides_drift_only_after_the_step(stream: tuple) -> None:
    idx, _, b = stream
    drift = where(idx, b, DRIFT)
    assert drift, "the step must be detected as a sustained shift"
    assert 907 <= drift[0] <= 907 + 120  # within 10 minutes of believing the step
    assert not [i for i in drift if i < 900]


def test_ramp_slope_and_score(stream: tuple) -> None:
    idx, _, b = stream
    end = int(np.flatnonzero(idx == 1499)[0])
    assert b.out[end, L.O_SLOPE] == pytest.approx(1.2, abs=0.05)
    stable = (idx > 20) & (idx < 390)
    # the score is s / (s + 2) for a surprise of s decades: 0.8 is p = 1e-8
    assert np.nanmax(b.score[stable]) < 0.8
    spike = b.score[idx == 400].item()
    assert spike > 0.99  # p < 1e-198: the spike scores as anomalous
    assert spike == np.nanmax(b.score)  # and ranks above everything else
