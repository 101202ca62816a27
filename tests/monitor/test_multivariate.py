"""The per-bed HalfSpaceTrees detector: warm-up, determinism, checkpoint, shock, and
the vectors that wait while river is imported in the background."""

from __future__ import annotations

import gc
import pickle
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from monitor.scoring.multivariate import NO_FULL_PASS, Background, BedAnomaly, _Bed, _Pause


def vitals(rng: np.random.Generator, hr: float = 75, sbp: float = 125) -> dict[str, float]:
    h = hr + rng.normal(0, 3)
    s = sbp + rng.normal(0, 5)
    d = 0.62 * s + rng.normal(0, 2)
    return {"hr": h, "sbp": s, "dbp": d, "map": d + (s - d) / 3}


def run(det: BedAnomaly, minutes: range, seed: int, shock_from: int = 10**9) -> list[float]:
    rng = np.random.default_rng(seed)
    out = []
    for k in minutes:
        shock = max(0, k - shock_from)
        v = vitals(rng, hr=75 + 1.0 * shock, sbp=125 - 1.0 * shock)
        s = det.score("4A", "1", k * 60.0, v)
        assert s is not None
        out.append(s)
    return out


def test_rate_limit_missing_values_and_warmup() -> None:
    det = BedAnomaly(every_s=60.0, window_size=20)
    rng = np.random.default_rng(0)
    assert det.score("4A", "1", 0.0, vitals(rng)) == 0.0  # first window: reference only
    assert det.score("4A", "1", 30.0, vitals(rng)) is None  # not due yet
    assert det.score("4A", "1", 90.0, {"hr": 80.0, "sbp": 120.0}) is None  # incomplete
    assert det.score("4A", "1", 120.0, {**vitals(rng), "map": float("nan")}) is None


def test_same_seed_same_scores_and_checkpoint_round_trip() -> None:
    a, b = BedAnomaly(window_size=30), BedAnomaly(window_size=30)
    assert run(a, range(200), seed=1) == run(b, range(200), seed=1)
    c = BedAnomaly(window_size=30)
    run(c, range(100), seed=1)
    d = BedAnomaly(window_size=30)
    d.restore(c.checkpoint())
    rest_c = run(c, range(100, 200), seed=9)
    rest_d = run(d, range(100, 200), seed=9)
    assert rest_c == rest_d


def test_shock_pattern_scores_higher_than_the_bed_normal() -> None:
    det = BedAnomaly(window_size=60)
    scores = run(det, range(360), seed=3, shock_from=300)
    normal = np.array(scores[120:300])
    shock = np.array(scores[330:360])  # HR +30..+60, SBP -30..-60
    assert np.median(shock) > np.percentile(normal, 99)
    assert np.percentile(normal, 95) < 0.9


def _minutes(rng: np.random.Generator, beds: tuple[str, ...], minutes: range
             ) -> list[tuple[str, float, dict[str, float]]]:
    return [(b, k * 60.0, vitals(rng)) for k in minutes for b in beds]


def test_vectors_due_while_river_loads_wait_and_score_as_they_would_have(
        gated_import: tuple[Background, threading.Event]) -> None:
    background, gate = gated_import
    feed = _minutes(np.random.default_rng(4), ("1", "2"), range(40))
    ref = BedAnomaly(window_size=10)
    want = [(b, t, ref.score("4A", b, t, x)) for b, t, x in feed]
    det = BedAnomaly(window_size=10, background=background)
    assert [det.score("4A", b, t, x) for b, t, x in feed[:30]] == [None] * 30
    assert det.waiting == 30 and det.catch_up() == []  # still loading
    assert det.last_t("4A", "1") == feed[28][1]  # their turns were taken: not due again
    assert det.score("4A", "1", feed[28][1] + 30.0, feed[28][2]) is None
    assert det.waiting == 30
    # a stop now keeps what waits: a detector restored from it catches up the same way
    later = BedAnomaly(window_size=10)
    later.restore(det.checkpoint())
    gate.set()
    background.join()
    assert background.loaded and background.error is None
    b, t, x = feed[30]  # loaded, with vectors waiting: it waits behind them
    assert det.score("4A", b, t, x) is None
    got = [(b, t, s) for _, b, t, s in det.catch_up()]
    assert got == want[:31]
    assert [(b, t, s) for _, b, t, s in later.catch_up()] == want[:30]
    assert det.waiting == 0 and det.catch_up() == []
    assert [(b, t, det.score("4A", b, t, x)) for b, t, x in feed[31:]] == want[31:]
    assert [(b, t, later.score("4A", b, t, x)) for b, t, x in feed[30:]] == want[30:]


def test_restored_models_wait_for_river_too(
        gated_import: tuple[Background, threading.Event]) -> None:
    background, gate = gated_import
    feed = _minutes(np.random.default_rng(6), ("1",), range(60))
    ref = BedAnomaly(window_size=10)
    want = [ref.score("4A", b, t, x) for b, t, x in feed]
    first = BedAnomaly(window_size=10)
    assert [first.score("4A", b, t, x) for b, t, x in feed[:30]] == want[:30]
    det = BedAnomaly(window_size=10, background=background)
    det.restore(first.checkpoint())
    assert det.last_t("4A", "1") == feed[29][1]  # known before river is
    assert [det.score("4A", b, t, x) for b, t, x in feed[30:35]] == [None] * 5
    again = BedAnomaly(window_size=10)
    again.restore(det.checkpoint())  # models passed on still pickled, and what waits
    gate.set()
    background.join()
    assert [s for *_, s in det.catch_up()] == want[30:35]
    assert [s for *_, s in again.catch_up()] == want[30:35]
    assert [det.score("4A", b, t, x) for b, t, x in feed[35:]] == want[35:]


def test_a_checkpoint_from_before_the_waiting_vectors_is_restored() -> None:
    feed = _minutes(np.random.default_rng(8), ("1", "2"), range(30))
    ref = BedAnomaly(window_size=10)
    want = [ref.score("4A", b, t, x) for b, t, x in feed]
    first = BedAnomaly(window_size=10)
    for b, t, x in feed[:20]:
        first.score("4A", b, t, x)
    old = pickle.dumps({k: _Bed(m, first.last_t(*k)) for k, m in first._models.items()})
    det = BedAnomaly(window_size=10)
    det.restore(old)
    assert [det.score("4A", b, t, x) for b, t, x in feed[20:]] == want[20:]


def test_a_failed_import_is_said_where_a_vector_is_due() -> None:
    background = Background(f"ww_missing_{uuid.uuid4().hex}")
    background.join()
    assert isinstance(background.error, ImportError)
    det = BedAnomaly(background=background)
    with pytest.raises(ImportError, match="cannot import ww_missing_"):
        det.score("4A", "1", 0.0, vitals(np.random.default_rng(0)))


def test_a_background_import_leaves_the_gil_to_the_others_and_puts_all_back(
        gated_import: tuple[Background, threading.Event]) -> None:
    background, gate = gated_import
    background.freeze = True  # as in the daemon's own process
    before = sys.getswitchinterval()
    frozen, thresholds = gc.get_freeze_count(), gc.get_threshold()
    assert background.switch_s < before and thresholds[2] < NO_FULL_PASS
    background.start()
    deadline = time.monotonic() + 30
    while sys.getswitchinterval() == before and time.monotonic() < deadline:
        time.sleep(0.01)  # until the import runs
    try:
        assert sys.getswitchinterval() == pytest.approx(background.switch_s)  # in µs inside
        assert [f for f in sys.meta_path if isinstance(f, _Pause)]
        # no full pass walks what the import makes; the young generations still run
        assert gc.get_threshold() == (*thresholds[:2], NO_FULL_PASS) and gc.isenabled()
        assert not background.loaded
        gate.set()
        background.join()
        assert background.loaded and background.error is None and background.took_s > 0
        assert sys.getswitchinterval() == before
        assert not [f for f in sys.meta_path if isinstance(f, _Pause)]
        assert gc.get_threshold() == thresholds
        assert gc.get_freeze_count() > frozen  # what it made: frozen
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
