"""``wardwatch evaluate --cgm DIR``: real CGM recordings through wardwatch and the baselines.

Each recording (``*.csv`` or ``*.csv.gz``, columns ``timestamp,value`` in mg/dL) goes
through the live scoring kernels and alarm engine, in replay mode with the modelled
responder (every alarm acknowledged ``ack_after`` seconds after it sounds), and through
five baselines on the same readings:

* ``below70`` — a reactive alarm on the first reading < 70 mg/dL;
* ``below80`` — the same at < 80 mg/dL, an early-warning margin;
* ``ar2`` — Nightscout's AR(2) forecast on log-glucose, ``ln(BG/140)``, coefficients
  (1.716, −0.723) per 5 min; an alarm when its 20-min point is < 80 mg/dL (Nightscout's
  ``low`` event with the default bottom target). The value 5 min ago is interpolated
  between the two newest readings, as Nightscout's delta does, so other cadences work;
* ``ar2_gated`` — the same, only while Nightscout's loss gate is open: the mean squared
  ``log10(BG/120)`` over its 30-min path above 0.05 (its WARN level);
* ``linear30`` — a Loop-style linear projection: the least-squares slope of the readings in
  the last 15 min (at least two), projected 30 min ahead, < 70 mg/dL.

Each baseline alarms when its condition becomes true and re-arms when it is false again.

Definitions (from the issue that asked for this evaluation):

* **event**: ≥ 2 consecutive readings < 70 mg/dL (no gap over ``2.5 ×`` the recording's
  cadence between them); the onset is the first of them; it lasts until a reading ≥ 70 or
  a gap. **Level 2** is the same at < 54.
* **detected**: a low-glucose alarm (any ``glucose.low.*`` code; for a baseline, its
  alarm) fires within [onset − 60 min, onset + 15 min]; **lead** = onset − the first such
  alarm; **sens15** = the share of events warned ≥ 15 min ahead.
* **alarm episode**: a firing with no firing of the same detector in the 30 min before it
  starts one; later firings within 30 min of the previous belong to it (a prediction, its
  value alarm and a re-sounding are one episode for a nurse).
* **false alarm**: an episode none of whose firings lies in an event's detection window
  or during an event; **precision** = true episodes / all episodes; a **near miss** is a
  false alarm after which glucose fell below 80 mg/dL within the hour.
* **patient-days**: time covered by readings (gaps over 1 h are not counted).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.config import AlarmSettings
from monitor.errors import WardwatchError
from monitor.lifecycle import AlarmEngine
from monitor.offline import read_series
from monitor.ruleset import DEFAULT_RULES, RuleSet, parse_overrides
from monitor.scoring import Scorer
from monitor.vitals import METRIC_IDS

F64 = npt.NDArray[np.float64]

EVENT_MGDL = 70.0
LEVEL2_MGDL = 54.0
BEFORE_S = 3600.0  # an alarm up to 60 min before the onset detects the event
AFTER_S = 900.0  # ... and up to 15 min after it
LEAD_S = 900.0  # sens15: warned at least this far ahead
EPISODE_S = 1800.0  # firings this close belong to one episode
NEAR_MGDL = 10.0  # a false alarm after which glucose came below 80 within the hour
GAP_S = 3600.0  # longer gaps are not patient time
LOW_CODES = ("glucose.low.",)
PREDICTED = "glucose.low.predicted"
DEFAULT_WINDOW_MIN = next(lv.threshold for r in DEFAULT_RULES for lv in r.levels
                          if lv.code == PREDICTED)
SWEEP_MIN = (10.0, 15.0, 20.0, 25.0, 30.0)  # the trade-off curve (predictions reach 30 min)


@dataclass(frozen=True, slots=True)
class Recording:
    name: str
    t: F64  # epoch seconds, sorted, unique
    v: F64  # mg/dL
    cadence_s: float  # median interval between readings

    @property
    def days(self) -> float:
        dt = np.diff(self.t)
        return float(dt[dt <= GAP_S].sum()) / 86400.0


@dataclass(frozen=True, slots=True)
class Event:
    onset: float
    end: float
    level2: bool


def subsample(t: F64, v: F64, cadence_s: float) -> tuple[F64, F64]:
    """Every reading at least ``cadence_s`` (less 10%) after the last kept one: what a
    device reporting at that cadence would have sent."""
    keep = np.zeros(t.size, dtype=bool)
    last = -math.inf
    for i, x in enumerate(t.tolist()):
        if x - last >= 0.9 * cadence_s:
            keep[i] = True
            last = x
    return t[keep], v[keep]


def recording(name: str, t: F64, v: F64, cadence_s: float | None = None) -> Recording:
    """Readable, in time order, one reading per timestamp (the first), optionally
    subsampled to ``cadence_s``."""
    ok = np.isfinite(t) & np.isfinite(v) & (v > 0)
    t, v = t[ok], v[ok]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    first = np.concatenate(([True], np.diff(t) > 0))
    t, v = t[first], v[first]
    if cadence_s:
        t, v = subsample(t, v, cadence_s)
    cadence = float(np.median(np.diff(t))) if t.size > 1 else math.nan
    return Recording(name, t, v, cadence)


def load(folder: Path, cadence_s: float | None = None) -> list[Recording]:
    """Every ``*.csv`` / ``*.csv.gz`` of ``folder`` but ``metadata.csv``, by name."""
    if not folder.is_dir():
        raise WardwatchError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir()
                   if (p.name.endswith(".csv") or p.name.endswith(".csv.gz"))
                   and not p.name.startswith("metadata.csv"))
    if not files:
        raise WardwatchError(f"{folder}: no *.csv or *.csv.gz recordings")
    out = []
    for p in files:
        _, t, v = read_series(p)
        rec = recording(p.name.split(".csv")[0], t, v, cadence_s)
        if rec.t.size >= 2:
            out.append(rec)
    return out


def events(rec: Recording) -> list[Event]:
    """Runs of ≥ 2 consecutive readings < 70 mg/dL (see the module docstring)."""
    t, v = rec.t, rec.v
    max_gap = 2.5 * rec.cadence_s
    out: list[Event] = []
    i, n = 0, t.size
    while i < n - 1:
        if v[i] < EVENT_MGDL and v[i + 1] < EVENT_MGDL and t[i + 1] - t[i] <= max_gap:
            j = i + 1
            while j + 1 < n and v[j + 1] < EVENT_MGDL and t[j + 1] - t[j] <= max_gap:
                j += 1
            lv2 = False
            for k in range(i, j):
                if v[k] < LEVEL2_MGDL and v[k + 1] < LEVEL2_MGDL:
                    lv2 = True
            out.append(Event(float(t[i]), float(t[j]), lv2))
            i = j + 1
        else:
            i += 1
    return out


# -- detectors: each returns the times its low-glucose alarms fire ---------------------

def wardwatch_alarms(rec: Recording, ack_after: float = 120.0,
                     window_min: float | None = None) -> tuple[list[float], int]:
    """Low-glucose firings of the live kernels and alarm engine, with the modelled
    responder; and the number of all glucose firings (the whole burden).

    ``window_min``: the ``glucose.low.predicted`` window, if not the default (the main
    setting, swept for the trade-off curve)."""
    scorer = Scorer()
    rules = None
    if window_min is not None:
        rules = RuleSet({"*": parse_overrides(
            {PREDICTED: {"threshold": window_min}}, "evaluation")})
    engine = AlarmEngine(rules, AlarmSettings(escalate_high_s=0, escalate_medium_s=0),
                         ack_after=ack_after)
    mid = METRIC_IDS["glucose"]
    sid = np.full(rec.t.size, scorer.streams.index("cgm", rec.name, mid), dtype=np.int64)
    batch = scorer.score(sid, np.full(rec.t.size, mid, dtype=np.int64), rec.t, rec.v,
                         float(rec.t[-1]))
    low: list[float] = []
    every = 0
    for _, ev in engine.update(batch, scorer.streams):
        if ev.state != "firing":
            continue
        every += 1
        if ev.code.startswith(LOW_CODES):
            low.append(ev.t)
    return low, every


def _edges(t: F64, cond: npt.NDArray[np.bool_], valid: npt.NDArray[np.bool_]) -> list[float]:
    """Times where ``cond`` becomes true (re-armed where false or not computable)."""
    out = []
    prev = False
    for tt, c, ok in zip(t.tolist(), cond.tolist(), valid.tolist(), strict=True):
        now = bool(c and ok)
        if now and not prev:
            out.append(tt)
        prev = now
    return out


def below(threshold: float) -> Callable[[Recording], list[float]]:
    def detector(rec: Recording) -> list[float]:
        return _edges(rec.t, rec.v < threshold, np.ones(rec.t.size, dtype=bool))
    detector.__name__ = f"below{threshold:g}"
    return detector


AR2 = (1.716, -0.723)
BG_REF, BG_MIN, BG_MAX = 140.0, 36.0, 400.0


def _ar2_paths(rec: Recording) -> tuple[F64, F64, npt.NDArray[np.bool_]]:
    """Per reading: Nightscout's 20-min AR2 point, its loss, and whether it could forecast
    (two readings >= 36 mg/dL, the previous at most 2.5 cadences back)."""
    t, v = rec.t, rec.v
    n = t.size
    p20 = np.full(n, np.nan)
    loss = np.full(n, np.nan)
    ok = np.zeros(n, dtype=bool)
    for i in range(1, n):
        el = (t[i] - t[i - 1]) / 60.0
        if not 0 < el <= 2.5 * rec.cadence_s / 60.0 or v[i] < BG_MIN or v[i - 1] < BG_MIN:
            continue
        ago5 = v[i] - (v[i] - v[i - 1]) * 5.0 / el
        if ago5 <= 0:
            continue
        prev, curr = math.log(ago5 / BG_REF), math.log(v[i] / BG_REF)
        pts = []
        for _ in range(6):
            prev, curr = curr, AR2[0] * curr + AR2[1] * prev
            pts.append(max(BG_MIN, min(BG_MAX, round(BG_REF * math.exp(curr)))))
        size = min(len(pts) - 1, 6)
        loss[i] = sum(math.log10(x / 120.0) ** 2 for x in pts[:size + 1]) / size
        p20[i] = pts[3]
        ok[i] = True
    return p20, loss, ok


def ar2(rec: Recording) -> list[float]:
    p20, _, ok = _ar2_paths(rec)
    return _edges(rec.t, np.nan_to_num(p20, nan=np.inf) < 80.0, ok)


def ar2_gated(rec: Recording) -> list[float]:
    p20, loss, ok = _ar2_paths(rec)
    cond = (np.nan_to_num(p20, nan=np.inf) < 80.0) & (np.nan_to_num(loss) > 0.05)
    return _edges(rec.t, cond, ok)


def linear30(rec: Recording) -> list[float]:
    t, v = rec.t, rec.v
    n = t.size
    proj = np.full(n, np.nan)
    j = 0
    for i in range(n):
        while t[i] - t[j] > 900.0:
            j += 1
        if i - j < 1:
            continue
        tt, vv = t[j:i + 1] - t[i], v[j:i + 1]
        slope = float(np.polyfit(tt, vv, 1)[0])
        proj[i] = v[i] + slope * 1800.0
    ok = np.isfinite(proj)
    return _edges(t, np.nan_to_num(proj, nan=np.inf) < EVENT_MGDL, ok)


BASELINES: dict[str, Callable[[Recording], list[float]]] = {
    "below70": below(70.0), "below80": below(80.0), "ar2": ar2, "ar2_gated": ar2_gated,
    "linear30": linear30,
}


# -- scoring ------------------------------------------------------------------------

@dataclass
class Tally:
    leads: list[float | None] = field(default_factory=list)  # minutes, None: missed
    leads2: list[float | None] = field(default_factory=list)  # level-2 events
    episodes: int = 0
    false: int = 0
    near_misses: int = 0  # false episodes after which glucose came within 10 of 70 in 1 h
    firings: int = 0
    burden: int = 0  # wardwatch: every glucose firing, low or not
    days: float = 0.0


def episodes(firings: list[float]) -> list[list[float]]:
    out: list[list[float]] = []
    for x in sorted(firings):
        if out and x - out[-1][-1] <= EPISODE_S:
            out[-1].append(x)
        else:
            out.append([x])
    return out


def score(rec: Recording, evs: list[Event], firings: list[float], tally: Tally) -> None:
    tally.days += rec.days
    tally.firings += len(firings)
    fired = np.array(sorted(firings))
    for e in evs:
        lo, hi = e.onset - BEFORE_S, e.onset + AFTER_S
        a = int(np.searchsorted(fired, lo, side="left"))
        lead = (e.onset - fired[a]) / 60.0 if a < fired.size and fired[a] <= hi else None
        tally.leads.append(lead)
        if e.level2:
            tally.leads2.append(lead)
    for ep in episodes(firings):
        tally.episodes += 1
        true = any(e.onset - BEFORE_S <= x <= max(e.onset + AFTER_S, e.end)
                   for x in ep for e in evs)
        if not true:
            tally.false += 1
            hour = (rec.t >= ep[0]) & (rec.t <= ep[0] + BEFORE_S)
            if hour.any() and float(rec.v[hour].min()) < EVENT_MGDL + NEAR_MGDL:
                tally.near_misses += 1


def summary(tally: Tally) -> dict[str, Any]:
    leads = tally.leads
    found = [x for x in leads if x is not None]
    n = len(leads)
    days = max(tally.days, 1e-9)
    return {
        "events": n,
        "level2_events": len(tally.leads2),
        "sensitivity": len(found) / n if n else None,
        "sens15": sum(1 for x in found if x >= LEAD_S / 60.0) / n if n else None,
        "sens15_level2": (sum(1 for x in tally.leads2 if x is not None and x >= LEAD_S / 60.0)
                          / len(tally.leads2)) if tally.leads2 else None,
        "lead_median_min": float(np.median(found)) if found else None,
        "lead_p10_min": float(np.percentile(found, 10)) if found else None,
        "false_alarms_per_patient_day": tally.false / days,
        "episodes_per_patient_day": tally.episodes / days,
        "alarms_per_event": tally.firings / n if n else None,
        "precision": (tally.episodes - tally.false) / tally.episodes if tally.episodes else None,
        "near_miss_share": tally.near_misses / tally.false if tally.false else None,
        "all_glucose_alarms_per_patient_day": tally.burden / days if tally.burden else None,
        "leads_min": leads,
    }


def evaluate_recordings(recs: Iterable[Recording], *, ack_after: float = 120.0,
                        detectors: Iterable[str] | None = None,
                        sweep: Iterable[float] = SWEEP_MIN,
                        progress: Callable[[], None] | None = None) -> dict[str, Any]:
    """Figures per detector (the ``--json`` of ``wardwatch evaluate --cgm``); ``curve``:
    wardwatch's sens15 and false alarms for each window of its predictive low alarm."""
    names = list(detectors) if detectors is not None else ["wardwatch", *BASELINES]
    tallies = {name: Tally() for name in names}
    windows = [w for w in sweep if w != DEFAULT_WINDOW_MIN]
    curve = {w: Tally() for w in windows}
    n = 0
    days = 0.0
    cadences = []
    for rec in recs:
        n += 1
        days += rec.days
        cadences.append(rec.cadence_s)
        evs = events(rec)
        for name in names:
            if name == "wardwatch":
                low, every = wardwatch_alarms(rec, ack_after)
                tallies[name].burden += every
                score(rec, evs, low, tallies[name])
            else:
                score(rec, evs, BASELINES[name](rec), tallies[name])
        for w, tally in curve.items():
            score(rec, evs, wardwatch_alarms(rec, ack_after, w)[0], tally)
        if progress is not None:
            progress()
    det = {name: summary(t) for name, t in tallies.items()}
    points = {w: summary(t) for w, t in curve.items()}
    if "wardwatch" in det:
        points[DEFAULT_WINDOW_MIN] = det["wardwatch"]
    return {"recordings": n, "patient_days": days,
            "cadence_min": float(np.median(cadences)) / 60.0 if cadences else None,
            "ack_after_s": ack_after, "default_window_min": DEFAULT_WINDOW_MIN,
            "detectors": det,
            "curve": [{"window_min": w, "sens15": points[w]["sens15"],
                       "false_alarms_per_patient_day":
                           points[w]["false_alarms_per_patient_day"],
                       "precision": points[w]["precision"],
                       "lead_median_min": points[w]["lead_median_min"]}
                      for w in sorted(points)]}


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


TARGETS = {"sens15": 0.93, "lead_median_min": 20.0, "false_alarms_per_patient_day": 0.5,
           "precision": 0.5}


def beats(ww: dict[str, Any], other: dict[str, Any]) -> bool:
    """Higher sens15 and fewer false alarms per patient-day, both at once."""
    a, b = ww["sens15"], other["sens15"]
    return (a is not None and b is not None and a > b
            and ww["false_alarms_per_patient_day"] < other["false_alarms_per_patient_day"])


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """One table per (set, cadence) key of ``results``, and wardwatch's trade-off curve."""
    lines = ["# wardwatch on real CGM recordings", ""]
    for label, res in results.items():
        det = res["detectors"]
        lines += [f"## {label}: {res['recordings']} recordings, {res['patient_days']:.0f} "
                  f"patient-days, every {_fmt(res['cadence_min'], '.0f')} min, responder "
                  f"acknowledges after {res['ack_after_s']:g} s", "",
                  "| detector | events (level 2) | sensitivity | sens15 | median lead (min) | "
                  "10th pct lead (min) | false alarms / patient-day | precision | "
                  "alarms / event | near misses |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, d in det.items():
            lines.append(
                f"| {name} | {d['events']} ({d['level2_events']}) | "
                f"{_fmt(d['sensitivity'], '.2f')} | "
                f"{_fmt(d['sens15'], '.2f')} | {_fmt(d['lead_median_min'], '.1f')} | "
                f"{_fmt(d['lead_p10_min'], '.1f')} | "
                f"{d['false_alarms_per_patient_day']:.2f} | {_fmt(d['precision'], '.2f')} | "
                f"{_fmt(d['alarms_per_event'], '.2f')} | "
                f"{_fmt(d['near_miss_share'], '.0%')} |")
        lines += ["", "*Near misses*: the share of false alarms after which glucose fell below "
                  f"{EVENT_MGDL + NEAR_MGDL:g} mg/dL within the hour (an event averted, or "
                  "one reading short of the definition)."]
        curve = res.get("curve", [])
        if curve and "wardwatch" in det:
            lines += ["", f"wardwatch over its main setting, the `{PREDICTED}` window "
                      f"(default {res['default_window_min']:g} min), and which baselines "
                      "each setting beats on sens15 and false alarms at once:", "",
                      "| window (min) | sens15 | false alarms / patient-day | precision | "
                      "median lead (min) | beats |", "|---|---|---|---|---|---|"]
            for pt in curve:
                won = [n for n, d in det.items() if n != "wardwatch" and beats(pt, d)]
                lines.append(f"| {pt['window_min']:g} | {_fmt(pt['sens15'], '.2f')} | "
                             f"{pt['false_alarms_per_patient_day']:.2f} | "
                             f"{_fmt(pt['precision'], '.2f')} | "
                             f"{_fmt(pt['lead_median_min'], '.1f')} | "
                             f"{', '.join(won) or '—'} |")
        lines.append("")
    return "\n".join(lines)


__all__ = [
    "BASELINES",
    "TARGETS",
    "Event",
    "Recording",
    "beats",
    "evaluate_recordings",
    "events",
    "load",
    "markdown",
    "recording",
    "subsample",
    "wardwatch_alarms",
]
