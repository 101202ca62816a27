"""A labelled synthetic corpus for ``score --metric generic``, and how a score is judged on it.

Each series is 3,000 samples a minute apart of AR(1) noise (sd 1), some with a daily
season, and one labelled anomaly at a seeded place: a **spike**, a **level shift**, a
**trend change**, a **variance change**, or a level shift under a **season**. A good
generic score is highest at the start of the anomaly, keeps resolution in its tail (it
does not sit at one value for hundreds of rows), and falls back once the new regime is
learned.

The judge is the Numenta Anomaly Benchmark's scoring (Lavin & Ahmad, 2015), standard
profile: every series has a window of ``WINDOW`` samples from the anomaly's start; the
first detection inside it earns ``2 / (1 + e^(5y)) - 1`` for its relative position ``y``
in the window (-1 at the start, 0 at the end: early detection earns nearly 1, late
nearly 0); a window with no detection costs 1; every detection outside a window costs
``A_FP`` = 0.11. A detection is a rise of the score through a threshold; each detector
gets the threshold that serves it best on the corpus, as NAB does, and the result is
normalised to 100 for a perfect detector and 0 for one that never detects.

The baseline is a windowed Gaussian z-score: ``|x - mean| / sd`` over the previous
``Z_WINDOW`` samples (NAB's "windowed Gaussian" is the same idea).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.scoring import GENERIC, Scorer
from monitor.scoring.params import generic_params

F64 = npt.NDArray[np.float64]

N = 3000
DT = 60.0
WINDOW = 200  # samples in each anomaly's window
A_FP = 0.11
Z_WINDOW = 100
KINDS = ("spike", "level_shift", "trend_change", "variance_change", "seasonal_shift")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    kind: str
    t: F64
    v: F64
    start: int  # first anomalous sample


def make_series(kind: str, rng: np.random.Generator, name: str) -> Series:
    noise = np.empty(N)
    e = rng.normal(0.0, math.sqrt(1 - 0.5**2), N)
    noise[0] = rng.normal()
    for i in range(1, N):
        noise[i] = 0.5 * noise[i - 1] + e[i]
    v = 100.0 + noise
    start = int(rng.integers(1000, 2500))
    k = np.arange(N - start)
    if kind == "spike":
        v[start] += rng.choice([-1, 1]) * rng.uniform(8, 15)
    elif kind == "level_shift":
        v[start:] += rng.choice([-1, 1]) * rng.uniform(4, 10)
    elif kind == "trend_change":
        v[start:] += rng.choice([-1, 1]) * rng.uniform(0.03, 0.08) * k
    elif kind == "variance_change":
        v[start:] = 100.0 + noise[start:] * rng.uniform(3, 5)
    elif kind == "seasonal_shift":
        day = 1440.0
        v += 5.0 * np.sin(2 * math.pi * (np.arange(N) / day + rng.uniform()))
        v[start:] += rng.choice([-1, 1]) * rng.uniform(5, 10)
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}")
    t: F64 = 1_763_856_000.0 + DT * np.arange(N, dtype=np.float64)
    return Series(name, kind, t, v, start)


def corpus(seed: int, per_kind: int = 6) -> list[Series]:
    rng = np.random.default_rng(seed)
    return [make_series(kind, rng, f"{kind}-{i}") for kind in KINDS for i in range(per_kind)]


def wardwatch_score(s: Series) -> F64:
    """``score --metric generic``'s score: the live kernel with parameters from the data's
    median step and noise (as :func:`monitor.offline.score_csv` takes them)."""
    dv = np.diff(s.v)
    noise = float(1.4826 * np.median(np.abs(dv - np.median(dv))) / math.sqrt(2))
    scorer = Scorer(params={GENERIC: generic_params(float(np.median(np.diff(s.t))), noise)})
    sid = np.full(N, scorer.streams.index("generic", s.name, GENERIC), dtype=np.int64)
    b = scorer.score(sid, np.full(N, GENERIC, dtype=np.int64), s.t, s.v, 0.0)
    return np.nan_to_num(b.score, nan=0.0)


def zscore(s: Series) -> F64:
    """|x - mean| / sd over the previous ``Z_WINDOW`` samples."""
    out = np.zeros(N)
    c1 = np.concatenate(([0.0], np.cumsum(s.v)))
    c2 = np.concatenate(([0.0], np.cumsum(s.v * s.v)))
    for i in range(Z_WINDOW, N):
        m = (c1[i] - c1[i - Z_WINDOW]) / Z_WINDOW
        var = max((c2[i] - c2[i - Z_WINDOW]) / Z_WINDOW - m * m, 1e-12)
        out[i] = abs(s.v[i] - m) / math.sqrt(var)
    return out


DETECTORS = {"wardwatch": wardwatch_score, "zscore": zscore}


def _sigmoid(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def nab(series: list[Series], scores: list[F64], threshold: float) -> float:
    """NAB's raw score (standard profile) of detections at ``threshold``."""
    total = 0.0
    for s, sc in zip(series, scores, strict=True):
        above = sc >= threshold
        rises = np.flatnonzero(above & ~np.concatenate(([False], above[:-1])))
        lo, hi = s.start, s.start + WINDOW
        inside = rises[(rises >= lo) & (rises < hi)]
        if inside.size:
            y = (inside[0] - hi) / WINDOW  # -1 at the window's start, 0 at its end
            total += _sigmoid(y)
        else:
            total -= 1.0
        total -= A_FP * int(np.count_nonzero((rises < lo) | (rises >= hi)))
    return total


def judge(series: list[Series], scores: list[F64]) -> dict[str, Any]:
    """The best normalised NAB score over thresholds, its threshold, and the tail
    resolution: rows after each anomaly's start (in its window) that share the window's
    highest score to 4 decimals."""
    pooled = np.concatenate(scores)
    candidates = np.unique(np.quantile(pooled, np.linspace(0.9, 1.0, 401)))
    perfect = len(series) * _sigmoid(-1.0)
    null = -float(len(series))
    best, best_th = -math.inf, math.nan
    for th in candidates:
        raw = nab(series, scores, float(th))
        if raw > best:
            best, best_th = raw, float(th)
    ties = []
    peaks = []
    for s, sc in zip(series, scores, strict=True):
        w = np.round(sc[s.start:s.start + WINDOW], 4)
        ties.append(int(np.count_nonzero(w == w.max())))
        peaks.append(int(np.argmax(sc[s.start:s.start + WINDOW])))
    return {"nab": 100.0 * (best - null) / (perfect - null), "threshold": best_th,
            "ties_at_peak_median": float(np.median(ties)), "ties_at_peak_max": max(ties),
            "peak_offset_median": float(np.median(peaks))}


def evaluate_generic(seed: int, per_kind: int = 6) -> dict[str, Any]:
    """Per detector, over the whole corpus and per kind of anomaly."""
    series = corpus(seed, per_kind)
    out: dict[str, Any] = {"seed": seed, "series": len(series), "detectors": {}}
    for name, fn in DETECTORS.items():
        scores = [fn(s) for s in series]
        res = judge(series, scores)
        res["by_kind"] = {}
        for kind in KINDS:
            pick = [i for i, s in enumerate(series) if s.kind == kind]
            res["by_kind"][kind] = judge([series[i] for i in pick], [scores[i] for i in pick])
        out["detectors"][name] = res
    return out


__all__ = ["DETECTORS", "KINDS", "Series", "corpus", "evaluate_generic", "judge", "nab",
           "wardwatch_score", "zscore"]
