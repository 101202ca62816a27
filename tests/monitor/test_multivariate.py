"""The per-bed HalfSpaceTrees detector: warm-up, determinism, checkpoint, and shock."""

from __future__ import annotations

import numpy as np

from monitor.scoring.multivariate import BedAnomaly


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
