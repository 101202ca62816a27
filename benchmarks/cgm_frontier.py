"""How far glucose alone can go: the trade-off frontier of CGM-only low-glucose warnings.

    .venv/bin/python benchmarks/cgm_frontier.py [DIR] [--cadence 15m] [--json F]

On one folder of CGM recordings (default: the tuning set, ``../shared/data/cgm/azt1d``),
with the event, detection and false-alarm definitions of ``wardwatch evaluate --cgm``
(``simulators/cgm.py``), it prints, in one run:

1. **The ceiling**: the share of events with any warning sign 15-60 min before the onset
   (the window in which an alarm counts towards sens15): a reading < 80 or < 90 mg/dL, or a
   30-min linear projection < 70. No detector that reads glucose alone can warn of the
   others 15 min ahead without also firing wherever glucose looks like that.
2. **A two-parameter family**: an alarm when ``level + h × slope < c`` (the kernel's robust
   slope), for horizons h of 0-60 min and thresholds c of 70-90 mg/dL; its Pareto front of
   sens15 against false alarms per patient-day. Every linear projection, damped trend and
   "< c" alarm is a member.
3. **A learned risk**: a logistic model of "an event starts within 60 min" on nine
   glucose-only features (level, log-level, 15- and 30-min least-squares slopes, their
   change, the kernel's robust slope, its predicted time to 70 mg/dL, the rolling sd, hours
   since the last reading < 70), fitted with subject-wise 5-fold cross-validation (each
   recording scored by a model that never saw it), swept over its alarm probability.
4. wardwatch (its predictive window swept) and the five baselines, on the same readings.

Read the fronts against one another: a detector off the frontier would show as a point
with more sens15 at fewer false alarms than the family's front.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.scoring import Scorer
from monitor.scoring import _layout as L
from monitor.vitals import METRIC_IDS
from simulators import cgm

F64 = npt.NDArray[np.float64]
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cgm" / "azt1d"
HORIZONS_MIN = (0, 10, 15, 20, 30, 45, 60)
THRESHOLDS = (70.0, 75.0, 80.0, 85.0, 90.0)
PROBS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
FOLDS = 5


def kernel_out(rec: cgm.Recording) -> F64:
    """The live scoring kernel's outputs, one row per reading."""
    scorer = Scorer()
    mid = METRIC_IDS["glucose"]
    sid = np.full(rec.t.size, scorer.streams.index("cgm", rec.name, mid), dtype=np.int64)
    batch = scorer.score(sid, np.full(rec.t.size, mid, dtype=np.int64), rec.t, rec.v,
                         float(rec.t[-1]))
    out: F64 = batch.out
    return out


def lsq_slopes(t: F64, v: F64, lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64]) -> F64:
    """Least-squares slope (mg/dL per min) of readings lo..hi (inclusive) for each row;
    NaN where fewer than two."""
    tm = (t - t[0]) / 60.0
    c = [np.concatenate(([0.0], np.cumsum(x))) for x in (np.ones_like(tm), tm, v, tm * v, tm * tm)]
    n, st, sv, stv, stt = (x[hi + 1] - x[lo] for x in c)
    den = n * stt - st * st
    with np.errstate(invalid="ignore", divide="ignore"):
        slope: F64 = np.where((n >= 2) & (den > 1e-9), (n * stv - st * sv) / den, np.nan)
    return slope


def features(rec: cgm.Recording, out: F64) -> F64:
    t, v = rec.t, rec.v
    i = np.arange(t.size)
    j15 = np.searchsorted(t, t - 900.0 - 1.0, side="right")
    j30 = np.searchsorted(t, t - 1800.0 - 1.0, side="right")
    k15 = np.maximum(np.searchsorted(t, t - 900.0, side="right") - 1, j30)
    s15 = lsq_slopes(t, v, j15, i)
    s30 = lsq_slopes(t, v, j30, i)
    before = lsq_slopes(t, v, j30, k15)
    last_low = np.maximum.accumulate(np.where(v < cgm.EVENT_MGDL, t, -np.inf))
    since = np.minimum((t - last_low) / 3600.0, 48.0)
    tlo = np.minimum(out[:, L.O_TLO], 3600.0) / 60.0
    return np.column_stack([v, np.log(v), s15, s30, s15 - before, out[:, L.O_SLOPE], tlo,
                            out[:, L.O_ROLL_SD], since])


def labels(rec: cgm.Recording, evs: list[cgm.Event]) -> tuple[F64, npt.NDArray[np.bool_]]:
    """1 in the hour before an onset; rows during an event and 30 min after are left out."""
    y = np.zeros(rec.t.size)
    keep = np.ones(rec.t.size, dtype=bool)
    for e in evs:
        y[(rec.t >= e.onset - cgm.BEFORE_S) & (rec.t < e.onset)] = 1.0
        keep[(rec.t >= e.onset) & (rec.t <= e.end + 1800.0)] = False
    return y, keep


def fit_logistic(x: F64, y: F64, ridge: float = 1e-3) -> tuple[F64, F64, F64]:
    ok = np.isfinite(x).all(axis=1)
    x, y = x[ok], y[ok]
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.column_stack([np.ones(len(x)), (x - mu) / sd])
    w = np.zeros(z.shape[1])
    for _ in range(25):  # Newton's method (IRLS)
        p = 1.0 / (1.0 + np.exp(-z @ w))
        h = z.T @ (z * (p * (1.0 - p))[:, None]) + ridge * np.eye(z.shape[1])
        w = w + np.linalg.solve(h, z.T @ (y - p))
    return w, mu, sd


def predict(model: tuple[F64, F64, F64], x: F64) -> F64:
    w, mu, sd = model
    ok = np.isfinite(x).all(axis=1)
    z = np.column_stack([np.ones(len(x)), (np.nan_to_num(x) - mu) / sd])
    p: F64 = np.where(ok, 1.0 / (1.0 + np.exp(-z @ w)), 0.0)
    return p


def point(recs: list[cgm.Recording], evs: list[list[cgm.Event]],
          firings: list[list[float]]) -> dict[str, Any]:
    tally = cgm.Tally()
    for rec, ev, f in zip(recs, evs, firings, strict=True):
        cgm.score(rec, ev, f, tally)
    s = cgm.summary(tally)
    return {k: s[k] for k in ("sens15", "false_alarms_per_patient_day", "precision",
                              "lead_median_min")}


def pareto(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point beats on both sens15 and false alarms."""
    out: list[dict[str, Any]] = []
    best = -1.0
    for p in sorted(points, key=lambda p: (p["false_alarms_per_patient_day"], -p["sens15"])):
        if p["sens15"] > best:
            out.append(p)
            best = p["sens15"]
    return out


def ceiling(recs: list[cgm.Recording], evs: list[list[cgm.Event]],
            feats: list[F64]) -> dict[str, float]:
    signs = {"reading < 80": 0, "reading < 90": 0, "30-min projection < 70": 0,
             "any of these": 0, "no reading 15-60 min before": 0}
    n = 0
    for rec, ev, f in zip(recs, evs, feats, strict=True):
        for e in ev:
            n += 1
            w = (rec.t >= e.onset - cgm.BEFORE_S) & (rec.t <= e.onset - cgm.LEAD_S)
            if not w.any():
                signs["no reading 15-60 min before"] += 1
                continue
            v, proj = rec.v[w], rec.v[w] + 30.0 * np.nan_to_num(f[w, 2], nan=0.0)
            hits = {"reading < 80": (v < 80).any(), "reading < 90": (v < 90).any(),
                    "30-min projection < 70": (proj < cgm.EVENT_MGDL).any()}
            for k, hit in hits.items():
                signs[k] += int(hit)
            signs["any of these"] += int(any(hits.values()))
    return {k: c / n for k, c in signs.items()} | {"events": n}


def frontier(folder: Path, cadence_s: float | None) -> dict[str, Any]:
    recs = cgm.load(folder, cadence_s)
    evs = [cgm.events(r) for r in recs]
    outs = [kernel_out(r) for r in recs]
    feats = [features(r, o) for r, o in zip(recs, outs, strict=True)]
    res: dict[str, Any] = {"folder": str(folder), "recordings": len(recs),
                           "cadence_min": float(np.median([r.cadence_s for r in recs])) / 60,
                           "ceiling": ceiling(recs, evs, feats)}
    family = []
    for h in HORIZONS_MIN:
        for c in THRESHOLDS:
            fires = []
            for r, o in zip(recs, outs, strict=True):
                s = o[:, L.O_SLOPE]
                fires.append(cgm._edges(r.t, r.v + h * np.nan_to_num(s) < c, np.isfinite(s)))
            family.append({"h_min": h, "c_mgdl": c, **point(recs, evs, fires)})
    res["family_front"] = pareto(family)
    xy = [labels(r, e) for r, e in zip(recs, evs, strict=True)]
    risk: list[F64] = [np.zeros(0)] * len(recs)
    for k in range(FOLDS):
        train = [i for i in range(len(recs)) if i % FOLDS != k]
        model = fit_logistic(np.vstack([feats[i][xy[i][1]] for i in train]),
                             np.concatenate([xy[i][0][xy[i][1]] for i in train]))
        for i in range(k, len(recs), FOLDS):
            risk[i] = predict(model, feats[i])
    res["logistic_cv"] = [
        {"p": p, **point(recs, evs, [cgm._edges(r.t, rk > p, np.ones(r.t.size, dtype=bool))
                                      for r, rk in zip(recs, risk, strict=True)])}
        for p in PROBS]
    res["wardwatch"] = [
        {"window_min": w, **point(recs, evs, [cgm.wardwatch_alarms(r, 120.0, w)[0]
                                              for r in recs])}
        for w in cgm.SWEEP_MIN]
    res["baselines"] = {name: point(recs, evs, [det(r) for r in recs])
                        for name, det in cgm.BASELINES.items()}
    return res


def _row(label: str, p: dict[str, Any]) -> str:
    lead = p["lead_median_min"]
    return (f"  {label:<26} sens15 {p['sens15']:.2f}  false/day "
            f"{p['false_alarms_per_patient_day']:.2f}  precision {p['precision']:.2f}  "
            f"median lead {'-' if lead is None else f'{lead:.0f}'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--cadence", choices=("5m", "15m"), default=None,
                    help="subsample to this cadence first")
    ap.add_argument("--json", type=Path, help="write the figures here")
    a = ap.parse_args()
    res = frontier(a.folder, {"5m": 300.0, "15m": 900.0}.get(a.cadence or ""))
    print(f"{res['folder']}: {res['recordings']} recordings, cadence "
          f"{res['cadence_min']:.0f} min, {res['ceiling']['events']} events")
    print("share of events with a sign 15-60 min before the onset:")
    for k, x in res["ceiling"].items():
        if k != "events":
            print(f"  {k:<30} {x:.3f}")
    print("level + h x slope < c, Pareto front:")
    for p in res["family_front"]:
        print(_row(f"h {p['h_min']:>2} min, c {p['c_mgdl']:.0f}", p))
    print("logistic risk, subject-wise 5-fold cross-validation:")
    for p in res["logistic_cv"]:
        print(_row(f"p > {p['p']:.2f}", p))
    print("wardwatch, glucose.low.predicted window:")
    for p in res["wardwatch"]:
        print(_row(f"{p['window_min']:.0f} min", p))
    print("baselines:")
    for name, p in res["baselines"].items():
        print(_row(name, p))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
