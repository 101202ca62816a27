"""The scoring kernel: agreement with its Python reference, and the contract every stream keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.rules import RULES
from monitor.scoring import (
    BAND_CHANGED,
    GENERIC,
    INVALID,
    STALE_ORDER,
    WARMUP,
    Scorer,
    StreamTable,
)
from monitor.scoring import _layout as L
from monitor.scoring._reference import RefStream
from monitor.scoring.params import PARAMS, generic_params
from monitor.vitals import GLUCOSE, HR, METRICS, SBP

NAMES = [m.name for m in METRICS]


def messy_stream(rng: np.random.Generator, metric: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Irregular times with gaps, duplicates and reversals; spikes, flat runs and steps."""
    p = PARAMS[NAMES[metric]] if metric < len(METRICS) else generic_params(1.0, 1.0)
    dt = rng.exponential(p.grid_s / 4, k)
    dt[rng.random(k) < 0.01] *= 200  # dropouts, some past the restart limit
    t = np.cumsum(dt)
    t[rng.random(k) < 0.03] -= p.grid_s  # late samples
    base = {HR: 80.0, SBP: 120.0, GLUCOSE: 110.0}.get(metric, 50.0)
    v = base + np.cumsum(rng.normal(0, 1.0, k)) + rng.normal(0, 2.0, k)
    v[rng.random(k) < 0.02] += 90  # spikes
    v[k // 3 : k // 3 + 40] = v[k // 3]  # a flat run
    v[k // 2 :] -= 40  # a step
    v = np.round(v, 1)
    v[rng.random(k) < 0.005] = np.nan
    return t, v


@pytest.mark.parametrize("seed", range(5))
def test_kernel_agrees_with_plain_python_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    metrics = [HR, SBP, GLUCOSE, GENERIC, HR, GLUCOSE]
    sc = Scorer()
    per_stream = []
    for j, m in enumerate(metrics):
        t, v = messy_stream(rng, m, 1500)
        s = sc.streams.index("W", str(j), m)
        per_stream.append((s, m, t, v))
    sid = np.concatenate([np.full(len(t), s) for s, _, t, _ in per_stream])
    met = np.concatenate([np.full(len(t), m) for _, m, t, _ in per_stream])
    t = np.concatenate([x[2] for x in per_stream])
    v = np.concatenate([x[3] for x in per_stream])
    # in chunks, as micro-batches arrive
    order = rng.permutation(len(t))
    got = []
    for chunk in np.array_split(order, 7):
        chunk = np.sort(chunk)
        b = sc.score(sid[chunk], met[chunk], t[chunk], v[chunk], 0.0)
        got.append(b)
    flags_seen = 0
    for s, m, ts, _ in per_stream:
        p = PARAMS[NAMES[m]] if m < len(METRICS) else generic_params(1.0, 1.0)
        rule = RULES.get(m)
        ref = RefStream(p, list(rule.edges) if rule else [], list(rule.upper) if rule else [])
        # the reference sees the same samples in the same order as the kernel did
        rows = []
        for b in got:
            idx = np.flatnonzero(b.sid == s)
            rows.extend((b.t[i], b.v[i], b.out[i], b.band[i], b.status[i]) for i in idx)
        assert len(rows) == len(ts)
        for tt, vv, out, band, status in rows:
            r_out, r_band, r_status = ref.step(float(tt), float(vv))
            # The kernel's rolling sd comes from running sums (O(1) per sample): when the
            # window's values are (nearly) equal it reads sqrt(float noise), up to
            # ~sqrt(64 * 2e-16) * scale ~ 2e-5. Every other output agrees to 1e-7.
            r_out = np.array(r_out)
            sd = L.O_ROLL_SD
            np.testing.assert_allclose(out[sd], r_out[sd], rtol=1e-7, atol=5e-5, equal_nan=True)
            out[sd] = r_out[sd]
            np.testing.assert_allclose(out, r_out, rtol=1e-7, atol=1e-7, equal_nan=True)
            assert (band, status) == (r_band, r_status)
            flags_seen |= int(status)
    for flag in (L.STALE_ORDER, L.ARTIFACT, L.FLATLINE, L.GAP, L.BAND_CHANGED, L.WARMUP,
                 L.INVALID):
        assert flags_seen & flag, f"random input never exercised flag {flag}"


def _feed(sc: Scorer, s: int, m: int, t: np.ndarray, v: np.ndarray, chunks: int = 1) -> np.ndarray:
    outs = [sc.score(np.full(len(c), s), np.full(len(c), m), t[c], v[c], 0.0).out
            for c in np.array_split(np.arange(len(t)), chunks)]
    return np.concatenate(outs)


def test_checkpoint_restore_round_trip_gives_identical_results() -> None:
    rng = np.random.default_rng(11)
    t, v = messy_stream(rng, GLUCOSE, 2000)
    whole = Scorer()
    s = whole.streams.index("W", "1", GLUCOSE)
    expected = _feed(whole, s, GLUCOSE, t, v)

    first = Scorer()
    s1 = first.streams.index("W", "1", GLUCOSE)
    _feed(first, s1, GLUCOSE, t[:1000], v[:1000])
    resumed = Scorer(StreamTable.restore(first.streams.checkpoint()))
    got = _feed(resumed, s1, GLUCOSE, t[1000:], v[1000:], chunks=3)
    np.testing.assert_array_equal(got, expected[1000:])


def test_same_input_same_result_in_any_batching() -> None:
    # Time-ordered input: a late sample is sorted into place inside its batch but is
    # STALE_ORDER across batches, so only ordered input is batching-invariant.
    rng = np.random.default_rng(5)
    t, v = messy_stream(rng, HR, 3000)
    t = np.sort(t)
    a, b = Scorer(), Scorer()
    sa = a.streams.index("W", "1", HR)
    sb = b.streams.index("W", "1", HR)
    np.testing.assert_array_equal(_feed(a, sa, HR, t, v, 1), _feed(b, sb, HR, t, v, 17))


def test_nan_is_ignored_and_leaves_state_untouched() -> None:
    sc = Scorer()
    s = sc.streams.index("W", "1", HR)
    _feed(sc, s, HR, np.arange(20) * 5.0, np.full(20, 80.0) + np.arange(20) % 3)
    before = sc.streams.checkpoint()
    b = sc.score(np.array([s, s]), np.array([HR, HR]), np.array([200.0, np.nan]),
                 np.array([np.nan, 80.0]), 0.0)
    assert (b.status == INVALID).all()
    assert np.isnan(b.out).all()
    after = sc.streams.checkpoint()
    for key in ("fs", "ist", "rx"):
        np.testing.assert_array_equal(before[key], after[key])


def test_warmup_then_scores_in_unit_interval() -> None:
    sc = Scorer()
    s = sc.streams.index("W", "1", SBP)
    rng = np.random.default_rng(1)
    t = np.arange(200) * 900.0
    v = 120 + rng.normal(0, 4, 200)
    b = sc.score(np.full(200, s), np.full(200, SBP), t, v, 0.0)
    assert (b.status[:3] & WARMUP).all() and not (b.status[3:] & WARMUP).any()
    assert np.isnan(b.score[:3]).all()
    assert ((b.score[3:] >= 0) & (b.score[3:] <= 1)).all()
    assert np.isnan(b.forecast[:3]).all() and np.isfinite(b.forecast[10:]).all()


def test_band_change_is_reported_once_per_crossing() -> None:
    sc = Scorer()
    s = sc.streams.index("4A", "12", SBP)
    sbp = np.array([120, 122, 85, 84, 86, 118], dtype=float)
    b = sc.score(np.full(6, s), np.full(6, SBP), np.arange(6) * 900.0, sbp, now=0.0)
    assert (b.has(BAND_CHANGED)).tolist() == [True, False, True, False, False, True]
    assert b.band.tolist() == [3, 3, 0, 0, 0, 3]


def test_late_sample_is_kept_for_history_but_does_not_move_state() -> None:
    sc = Scorer()
    s = sc.streams.index("4A", "1", GLUCOSE)
    sc.score(np.full(3, s), np.full(3, GLUCOSE), np.array([600.0, 0.0, 300.0]),
             np.array([90.0, 100.0, 95.0]), now=0.0)
    assert sc.streams.value[s] == 90.0
    before = sc.streams.checkpoint()
    late = sc.score(np.array([s]), np.array([GLUCOSE]), np.array([450.0]), np.array([300.0]), 0)
    assert late.status.tolist() == [STALE_ORDER]
    np.testing.assert_array_equal(before["fs"], sc.streams.checkpoint()["fs"])


def test_stream_table_grows_and_keeps_state() -> None:
    st = StreamTable(capacity=2)
    ids = [st.index("W", str(i), HR) for i in range(10)]
    assert ids == list(range(10))
    assert st.index("W", "3", HR) == 3
    assert (st.band[:10] == -1).all()


def test_parallel_kernel_gives_the_serial_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import monitor.scoring as scoring

    rng = np.random.default_rng(8)
    streams, per = 300, 200
    t = np.tile(np.cumsum(rng.exponential(20.0, per)), streams)
    v = 90 + rng.normal(0, 8, streams * per)
    results = []
    for threshold in (10**9, 1):  # serial, then parallel
        monkeypatch.setattr(scoring, "PARALLEL_MIN", threshold)
        sc = Scorer()
        sid = np.repeat([sc.streams.index("W", str(i), i % 5) for i in range(streams)], per)
        metric = (sid % 5).astype(np.int64)
        results.append(sc.score(sid.astype(np.int64), metric, t, v, 0.0))
    serial, parallel = results
    np.testing.assert_array_equal(serial.out, parallel.out)
    np.testing.assert_array_equal(serial.status, parallel.status)


def test_a_batch_in_order_skips_the_sort_and_scores_as_a_shuffled_one_does() -> None:
    from monitor.scoring._kernels import in_order

    i64 = np.array
    assert in_order(i64([0, 0, 1, 1]), np.array([1.0, 1.0, 0.0, 5.0]))  # ties kept in order
    assert not in_order(i64([0, 0]), np.array([2.0, 1.0]))
    assert not in_order(i64([1, 0]), np.array([0.0, 1.0]))
    assert not in_order(i64([0, 0]), np.array([1.0, np.nan]))  # NaN: the sort decides
    rng = np.random.default_rng(3)
    streams, per = 20, 300
    t = np.tile(np.cumsum(rng.exponential(5.0, per)), streams)
    v = 80 + np.cumsum(rng.normal(0, 1, streams * per))
    results = []
    for shuffle in (False, True):
        sc = Scorer()
        sid = np.repeat([sc.streams.index("W", str(i), HR) for i in range(streams)], per)
        order = rng.permutation(sid.size) if shuffle else np.arange(sid.size)
        b = sc.score(sid[order], np.full(sid.size, HR), t[order], v[order], 0.0)
        assert in_order(b.sid, b.t)
        results.append(b)
    ordered, shuffled = results
    np.testing.assert_array_equal(ordered.out, shuffled.out)
    np.testing.assert_array_equal(ordered.status, shuffled.status)
    assert not (ordered.status & STALE_ORDER).any()


def test_cached_kernels_are_dropped_when_a_kernel_source_changes(tmp_path: Path) -> None:
    from monitor.scoring import _cache

    old = [tmp_path / "_kernels.score_batch-277.py311.nbi", tmp_path / "_grid.x.py311.1.nbc"]
    for f in old:
        f.write_bytes(b"stale")
    assert _cache.drop_stale(tmp_path) is True  # no stamp: the cache may predate anything
    assert not any(f.exists() for f in old)
    assert (tmp_path / "wardwatch-kernels.sha256").read_text() == _cache.sources_digest()
    fresh = tmp_path / "_kernels.score_batch-277.py311.nbi"
    fresh.write_bytes(b"compiled from these sources")
    assert _cache.drop_stale(tmp_path) is False  # same sources: kept
    assert fresh.exists()
    (tmp_path / "wardwatch-kernels.sha256").write_text("an older digest")
    assert _cache.drop_stale(tmp_path) is True
    assert not fresh.exists()


def test_the_slope_median_is_numpys_median_with_ties_and_any_length() -> None:
    from monitor.scoring._grid import _median

    rng = np.random.default_rng(0)
    for n in list(range(1, 2 * 66)) * 5:
        x = rng.normal(size=n)
        if n % 3 == 0:
            x = np.round(x * 2)  # ties
        if n % 5 == 0:
            x = np.full(n, 1.5)  # a perfect ramp: every pairwise slope equal
        if n % 7 == 0:
            x = np.sort(x)[::-1].copy()
        assert _median(x.copy(), n) == np.median(x), (n, x)


def test_scoring_state_stays_under_4_kb_per_stream_at_100000_streams() -> None:
    """The kernel's per-stream state (and the table's keys), allocated as streams arrive;
    the station's per-minute trends are kept apart (``[http] trend_hours``)."""
    import tracemalloc

    scorer = Scorer()
    n = 100_000
    metric = np.arange(n, dtype=np.int64) % 5
    tracemalloc.start()
    try:
        index = scorer.streams.index
        sid = np.array([index(f"W{i // 1000}", str(i % 1000), int(metric[i])) for i in range(n)],
                       dtype=np.int64)
        batch = scorer.score(sid, metric, np.full(n, 1.7e9), np.full(n, 80.0), 1.7e9)
        del batch  # the batch's outputs are the caller's, not state
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(scorer.streams) == n
    assert held / n <= 4096
