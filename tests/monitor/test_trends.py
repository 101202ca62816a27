"""The station's per-minute trends against a plain reference, and their memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from monitor.scoring import ARTIFACT, STALE_ORDER, ScoredBatch
from monitor.scoring import _layout as L
from monitor.trends import COUNT, FC, FC_SD, FC_T, MEAN, MINUTE, MinuteTrends


def _batches(seed: int, n_streams: int, n_batches: int):  # type: ignore[no-untyped-def]
    """Random scored batches: each stream's samples in time order (some refused), at
    cadences from 1 s to 15 min, cut into batches at random."""
    rng = np.random.default_rng(seed)
    cadence = rng.choice([1.0, 5.0, 30.0, 60.0, 300.0, 900.0], n_streams)
    clock = 1.7e9 + rng.uniform(0, 60, n_streams)
    for _ in range(n_batches):
        sid, t = [], []
        for s in rng.choice(n_streams, rng.integers(1, n_streams + 1), replace=False):
            for _ in range(int(rng.integers(1, 6))):
                clock[s] += cadence[s] * rng.uniform(0.5, 1.5)
                sid.append(int(s))
                t.append(float(clock[s]))
        order = np.lexsort((t, sid))
        sid_a, t_a = np.array(sid)[order], np.array(t)[order]
        k = sid_a.size
        out = np.full((k, L.NO), np.nan)
        out[:, [L.O_FC, L.O_FC_SD]] = rng.normal(80, 5, (k, 2))
        out[:, L.O_FC_T] = t_a + rng.uniform(0, 1800, k)
        status = np.where(rng.random(k) < 0.1, ARTIFACT, 0)
        status[rng.random(k) < 0.05] |= STALE_ORDER
        yield ScoredBatch(sid_a, np.zeros(k, dtype=np.int64), t_a, rng.normal(80, 10, k),
                          out, np.zeros(k, dtype=np.int64), status)


def _reference(batches: list[ScoredBatch]) -> dict[int, dict[int, list[float]]]:
    """stream → minute → [sum, count, fc, fc_sd, fc_t] of its accepted samples."""
    ref: dict[int, dict[int, list[float]]] = {}
    for b in batches:
        for i in range(len(b)):
            if b.status[i]:
                continue
            row = ref.setdefault(int(b.sid[i]), {}).setdefault(
                int(np.floor(b.t[i] / 60.0)), [0.0, 0.0, 0.0, 0.0, 0.0])
            row[0] += b.v[i]
            row[1] += 1
            row[2:] = b.out[i, [L.O_FC, L.O_FC_SD, L.O_FC_T]].tolist()
    return ref


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_trends_match_a_plain_per_minute_mean(seed: int) -> None:
    batches = list(_batches(seed, n_streams=12, n_batches=300))
    hours = 2.0
    trends = MinuteTrends(hours)
    for b in batches:
        trends.add(b)
    ref = _reference(batches)
    assert set(ref) == {s for s in range(12) if trends.series(s, 0.0).size}
    for s, minutes in ref.items():
        rows = trends.series(s, 0.0)
        # the newest 120 closed minutes and the open one; older ones have scrolled on
        want = sorted(minutes)[-(int(hours * 60) + 1):]
        assert rows[:, MINUTE].tolist() == want
        for row, m in zip(rows, want, strict=True):
            total, n, fc, sd, ft = minutes[m]
            assert row[COUNT] == n
            assert row[MEAN] == pytest.approx(total / n, rel=1e-6)  # stored as float32
            assert row[FC] == pytest.approx(fc, rel=1e-6)
            assert row[FC_SD] == pytest.approx(sd, rel=1e-6)
            assert row[FC_T] == pytest.approx(ft, abs=1e-3)
        since = want[len(want) // 2] * 60.0
        assert trends.series(s, since)[:, MINUTE].tolist() == want[len(want) // 2:]


def test_trend_memory_grows_with_minutes_seen_not_with_the_window() -> None:
    """100,000 streams with two minutes each hold < 1 KB of trend apiece; a 15-min
    stream's day holds what its 96 rows need, not 1,440."""
    n = 100_000
    tracemalloc.start()
    try:
        trends = MinuteTrends(24.0)
        for minute in (0, 1):
            sid = np.arange(n, dtype=np.int64)
            t = np.full(n, 1.7e9 + 60.0 * minute)
            out = np.zeros((n, L.NO))
            trends.add(ScoredBatch(sid, sid, t, np.full(n, 80.0), out, sid,
                                   np.zeros(n, dtype=np.int64)))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert trends.series(n - 1, 0.0).shape == (2, 6)
    assert held / n < 1024, held / n

    cgm = MinuteTrends(24.0)
    one = np.zeros(1, dtype=np.int64)
    for k in range(96):
        cgm.add(ScoredBatch(one, one, np.array([1.7e9 + 900.0 * k]), np.array([100.0]),
                            np.zeros((1, L.NO)), one, one))
    assert cgm.series(0, 0.0).shape == (96, 6)
    # a ring of 128 rows (16 doubled thrice) and the first 64 streams' open minutes
    assert cgm.nbytes() == 128 * 24 + 64 * 64
