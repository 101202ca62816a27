"""Scoring cost and forecast error: our kernel vs river vs statsmodels, on the same stream.

    .venv/bin/python benchmarks/scoring.py [--samples 4000]

One synthetic CGM-like stream (5-min grid, ARIMA(2,1,0)-like dynamics, innovation sd 2
mg/dL, pulled weakly towards a slow daily swing around 140 mg/dL). Every detector sees
the same samples in the same order and makes its forecasts before learning each sample.
Prints ns per sample and the 1-step and 30-min (6-step) mean absolute forecast error of
each, and the ratios. Our cost is measured on 10,000 HR streams batched: at a sample
every 5 s (the headline figure: a grid step every 12 samples) and at 1 Hz, the cadence
bedside monitors send HR at (a grid step every 60).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.scoring import Scorer, aot
from monitor.scoring import _layout as L
from monitor.scoring._kernels import SCRATCH_N, score_batch, score_batch_parallel
from monitor.scoring.params import PARAMS
from monitor.vitals import GLUCOSE, HR

GRID = 300.0
H = 6


def stream(n: int, seed: int = 42) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = np.zeros(n)
    y = np.full(n, 140.0)
    e = rng.normal(0, 2.0, n)
    for k in range(2, n):
        target = 140 + 40 * math.sin(2 * math.pi * k / 288)  # a slow daily swing
        d[k] = 0.6 * d[k - 1] - 0.2 * d[k - 2] + e[k] - 0.02 * (y[k - 1] - target)
        y[k] = y[k - 1] + d[k]
    return y


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    ok = np.isfinite(pred)
    return float(np.mean(np.abs(pred[ok] - truth[ok])))


def ours(y: np.ndarray) -> tuple[float, float]:
    """1-step and 6-step forecast MAE of the full per-sample stack."""
    n = len(y)
    t = np.arange(n) * GRID + 60.0
    res = {}
    for h in (1, H):
        p = dataclasses.replace(PARAMS["glucose"], horizon=h, max_rate=math.inf)
        sc = Scorer(params={GLUCOSE: p})
        s = sc.streams.index("W", "1", GLUCOSE)
        b = sc.score(np.full(n, s), np.full(n, GLUCOSE), t, y, 0.0)
        fc = b.out[:, L.O_FC]
        pred = np.full(n, np.nan)
        pred[h:] = fc[:-h]  # the forecast made at k is for k + h
        res[h] = mae(pred[50:], y[50:])
    return res[1], res[H]


def kernel_ns(dt: float, streams: int = 10_000, per: int = 100) -> dict[str, float]:
    """ns/sample of the full stack on 10,000 HR streams, a sample every ``dt`` s, 100 samples
    each (HR's grid step is 60 s, so the grid work is spread over 60 / dt samples):

    * ``serial``: the kernel on one thread;
    * ``threads``: the kernel with the streams spread over every core (what a batch this
      large gets);
    * ``score``: ``Scorer.score`` end to end (order check, output allocation, kernel: the
      one ``wardwatch run`` uses, compiled ahead where it is built);
    * ``ahead``: the serial kernel compiled ahead (``monitor.scoring.aot``), if built.

    Each is the best of five batches that continue the same streams.
    """
    sc = Scorer()
    sids = np.array([sc.streams.index("W", str(i), HR) for i in range(streams)])
    sid = np.repeat(sids, per).astype(np.int64)
    metric = np.full(sid.size, HR, dtype=np.int64)
    base_t = np.tile(np.arange(per) * dt, streams)
    v = 75 + np.random.default_rng(0).normal(0, 2, sid.size)
    sc.score(sid, metric, base_t, v, 0.0)  # compiled / cached, and the streams warm
    st = sc.streams
    starts = np.arange(0, sid.size + 1, per, dtype=np.int64)
    out = np.empty((sid.size, L.NO))
    band = np.empty(sid.size, dtype=np.int64)
    status = np.empty(sid.size, dtype=np.int64)
    state = (st.fs, st.ist, st.rt, st.rx, st.rok, st.sw, st.gh, sc.params, sc.edges,
             sc.upper, sc.n_edges, out, band, status)
    runs: dict[str, Callable[[np.ndarray], object]] = {
        "serial": lambda t: score_batch(starts, sid, metric, t, v, *state,
                                        np.empty(SCRATCH_N)),
        "threads": lambda t: score_batch_parallel(starts, sid, metric, t, v, *state,
                                                  16 * numba.get_num_threads()),
        "score": lambda t: sc.score(sid, metric, t, v, 0.0),
    }
    ahead = aot.load()
    if ahead is not None:
        runs["ahead"] = lambda t: ahead.score_batch(starts, sid, metric, t, v, *state,
                                                   np.empty(SCRATCH_N))
    best = dict.fromkeys(runs, math.inf)
    r = 1
    for _ in range(5):
        for name, run in runs.items():
            t = base_t + r * per * dt
            r += 1
            t0 = time.perf_counter()
            run(t)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: b / sid.size * 1e9 for name, b in best.items()}


def river_snarimax(y: np.ndarray) -> tuple[float, float, float]:
    from river import linear_model, optim, preprocessing, time_series

    model = time_series.SNARIMAX(
        p=2, d=0, q=1,
        regressor=preprocessing.StandardScaler() | linear_model.LinearRegression(
            intercept_init=float(y[0]), optimizer=optim.SGD(0.01), intercept_lr=0.3),
    )
    n = len(y)
    p1 = np.full(n, np.nan)
    ph = np.full(n, np.nan)
    t0 = time.perf_counter()
    for k in range(n):
        if k >= 10:
            f = model.forecast(horizon=H)
            p1[k] = f[0]
            if k + H - 1 < n:
                ph[k + H - 1] = f[H - 1]
        model.learn_one(float(y[k]))
    el = time.perf_counter() - t0
    return el / n * 1e9, mae(p1[50:], y[50:]), mae(ph[50:], y[50:])


def river_hst(y: np.ndarray) -> float:
    from river import anomaly

    hst = anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=1,
                                 limits={"x": (40.0, 400.0)})
    t0 = time.perf_counter()
    for x in y:
        hst.score_one({"x": float(x)})
        hst.learn_one({"x": float(x)})
    return (time.perf_counter() - t0) / len(y) * 1e9


def statsmodels_refit(y: np.ndarray, window: int = 288,
                      every: int = 24) -> tuple[float, float, float]:
    from statsmodels.tsa.arima.model import ARIMA

    n = len(y)
    p1 = np.full(n, np.nan)
    ph = np.full(n, np.nan)
    fits = 0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(window, n - H, every):
            fit = ARIMA(y[k - window : k], order=(2, 1, 0), trend="n").fit()
            f = fit.forecast(H)
            p1[k] = f[0]
            ph[k + H - 1] = f[H - 1]
            fits += 1
    per_fit = (time.perf_counter() - t0) / fits
    return per_fit * 1e9, mae(p1, y), mae(ph, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=4000)
    args = ap.parse_args()
    y = stream(args.samples)
    k1, kh = ours(y)
    ks = kernel_ns(5.0)
    k_ns = ks["threads"]
    hz = kernel_ns(1.0)
    s_ns, s1, sh = river_snarimax(y)
    h_ns = river_hst(y)
    m_ns, m1, mh = statsmodels_refit(y)
    print(f"stream: {len(y)} CGM samples on a 5-min grid; forecasts at 5 and 30 min\n")
    w = 50
    print(f"{'detector':{w}s} {'cost':>18s} {'MAE 1-step':>11s} {'MAE 30 min':>11s}")
    threads = numba.get_num_threads()
    rows = [
        (f"wardwatch, 10k HR streams at 5 s, {threads} threads", f"{k_ns:.0f} ns/smp",
         f"{k1:11.2f} {kh:11.2f}"),
        ("  the same, 1 thread", f"{ks['serial']:.0f} ns/smp", ""),
        ("  the same, 1 thread, compiled ahead (the daemon's)",
         f"{ks['ahead']:.0f} ns/smp" if "ahead" in ks else "not built", ""),
        ("  the same through Scorer.score (end to end)", f"{ks['score']:.0f} ns/smp", ""),
        (f"  HR at 1 Hz, {threads} threads / 1 thread",
         f"{hz['threads']:.0f} / {hz['serial']:.0f} ns/smp", ""),
        ("river SNARIMAX(2,0,1) learn + forecast", f"{s_ns:.0f} ns/smp", f"{s1:11.2f} {sh:11.2f}"),
        ("river HalfSpaceTrees score + learn", f"{h_ns:.0f} ns/smp", ""),
        ("statsmodels ARIMA(2,1,0) refit, 288 window", f"{m_ns / 1e6:.1f} ms/fit",
         f"{m1:11.2f} {mh:11.2f}"),
    ]
    for label, cost, err in rows:
        print(f"{label:{w}s} {cost:>18s} {err}")
    print(f"\nriver (SNARIMAX + HST) / wardwatch cost per sample: {(s_ns + h_ns) / k_ns:.0f}x "
          f"({(s_ns + h_ns) / ks['serial']:.0f}x on 1 thread, "
          f"{(s_ns + h_ns) / ks['score']:.0f}x end to end)")
    if "ahead" in ks:
        print(f"compiled ahead / JIT, 1 thread: {ks['ahead'] / ks['serial']:.2f}")
    print(f"forecast MAE wardwatch / SNARIMAX: 1-step {k1 / s1:.2f}, 30 min {kh / sh:.2f}")
    print(f"forecast MAE wardwatch / statsmodels refit: 1-step {k1 / m1:.2f}, "
          f"30 min {kh / mh:.2f}")


if __name__ == "__main__":
    main()
