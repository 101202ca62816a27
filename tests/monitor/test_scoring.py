"""The scoring kernel: agreement with its Python reference, ordering, gaps, bands."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.scoring import BAND_CHANGED, SCORED, STALE_ORDER, Scorer, StreamTable, _reference
from monitor.scoring._kernels import score_batch
from monitor.vitals import GLUCOSE, HR, METRICS


def _state(n: int) -> list[np.ndarray]:
    return [np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n),
            np.full(n, -1, dtype=np.int64)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kernel_agrees_with_reference_on_random_input(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k, streams = 3000, 40
    sid = rng.integers(0, streams, k)
    metric = (sid % len(METRICS)).astype(np.int64)  # each stream has one metric
    # irregular, mostly increasing times with some duplicates and reversals
    t = np.cumsum(rng.exponential(5.0, k)) + rng.choice([0.0, -50.0], k, p=[0.95, 0.05])
    v = rng.normal(100, 40, k).round()
    sc = Scorer()
    tables = (sc.tau, sc.var_floor, sc.tables.edges, sc.tables.upper, sc.tables.n_edges)
    outs = []
    for fn in (score_batch, _reference.score_batch):
        state = _state(streams)
        res = [np.empty(k), np.empty(k, dtype=np.int64), np.empty(k, dtype=np.int64),
               np.empty(k, dtype=np.int64)]
        fn(sid, metric, t, v, *state, *tables, *res)
        outs.append((state, res))
    (s1, r1), (s2, r2) = outs
    for a, b in zip(s1 + r1, s2 + r2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, equal_nan=True)
    assert (r1[3] == STALE_ORDER).any() and (r1[3] == BAND_CHANGED).any()


def test_band_change_is_reported_once_per_crossing() -> None:
    sc = Scorer()
    s = sc.streams.index("4A", "12", HR)
    hr = np.array([80, 82, 135, 140, 138, 85], dtype=float)
    b = sc.score(np.full(6, s), np.full(6, HR), np.arange(6) * 5.0, hr, now=0.0)
    assert b.status.tolist() == [BAND_CHANGED, SCORED, BAND_CHANGED, SCORED, SCORED,
                                 BAND_CHANGED]
    assert b.band.tolist() == [2, 2, 5, 5, 5, 2]
    assert b.prev_band.tolist() == [-1, 2, 2, 5, 5, 5]


def test_batch_is_taken_in_time_order_and_late_samples_do_not_move_state() -> None:
    sc = Scorer()
    s = sc.streams.index("4A", "1", GLUCOSE)
    # delivered out of order inside one batch: sorted, so all are in order
    b = sc.score(np.full(3, s), np.full(3, GLUCOSE), np.array([20.0, 0.0, 10.0]),
                 np.array([60.0, 100.0, 90.0]), now=0.0)
    assert b.t.tolist() == [0.0, 10.0, 20.0]
    assert (b.status != STALE_ORDER).all()
    # a sample older than the stream's last one, in a later batch: kept, state untouched
    last_t, mean = sc.streams.last_t[s], sc.streams.mean[s]
    late = sc.score(np.array([s]), np.array([GLUCOSE]), np.array([15.0]), np.array([300.0]), 0.0)
    assert late.status.tolist() == [STALE_ORDER]
    assert (sc.streams.last_t[s], sc.streams.mean[s]) == (last_t, mean)
    assert sc.streams.last_v[s] == 60.0


def test_score_rises_for_a_jump_and_gaps_relax_the_model() -> None:
    sc = Scorer()
    s = sc.streams.index("4A", "2", HR)
    t = np.arange(60) * 5.0
    v = np.full(60, 80.0)
    v[-1] = 120.0
    b = sc.score(np.full(60, s), np.full(60, HR), t, v, now=0.0)
    assert np.isnan(b.score[:3]).all()
    assert b.score[10] < 0.5
    assert b.score[-1] > 0.99
    # after six hours of silence the EWMA has fully moved to the new sample's level
    b2 = sc.score(np.array([s, s]), np.array([HR, HR]), np.array([t[-1] + 6 * 3600,
                  t[-1] + 6 * 3600 + 5]), np.array([120.0, 120.0]), now=0.0)
    assert abs(sc.streams.mean[s] - 120.0) < 1e-6
    assert b2.score[1] < 0.5


def test_stream_table_grows_and_keeps_state() -> None:
    st = StreamTable(capacity=2)
    ids = [st.index("W", str(i), HR) for i in range(10)]
    assert ids == list(range(10))
    assert st.index("W", "3", HR) == 3
    assert st.band.shape[0] >= 10 and (st.band[:10] == -1).all()
