"""``wardwatch evaluate``: a cohort of virtual patients through wardwatch and baselines.

Every patient's reported streams go through the live scoring kernels and alarm engine
(replay mode: observation time is the clock), and through two baselines on the same
samples:

* ``thresholds`` — plain NEWS2 bands and ADA levels on the raw values, no delay, no
  artifact filter: an alarm each time a value enters a more severe alarming band.
* ``ar2`` — Nightscout's AR2 predictive low for glucose: x = ln(BG/140),
  x(t+5) = 1.716·x(t) − 0.723·x(t−5), 30 min ahead; an alarm when the prediction
  first falls below 70 mg/dL.
* ``river`` — river's online SNARIMAX(2,1,0) per stream, alarming when its forecast
  crosses a threshold of wardwatch's predictive rules within that rule's window
  (:func:`river_alarms`).

Scoring against the ground truth, per event type:

* an event *counts* when its true value crosses its clinical threshold (SBP ≤ 90 for
  sepsis and haemorrhage, ≥ 220 for a hypertensive crisis, HR ≤ 40 for bradycardia,
  glucose < 70 / > 250); it is *detected* when a clinical alarm of its family
  (cardiovascular or glucose) fires between its onset and its end;
* lead time = threshold crossing − the first such alarm (negative: after the crossing);
  it is reported over all detected events, and over the *predictable* ones: those the
  devices show at least 30 min before the crossing (``Event.predictable``), which is
  where a 15-min lead can fairly be asked for;
* a *false alarm* is a clinical alarm of a family with no event of that family going on
  (onset to end + 1 h) for that patient. Technical alarms (stale, flatline, offline) are
  not counted here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from monitor.config import AlarmSettings
from monitor.lifecycle import AlarmEngine
from monitor.rules import RULES
from monitor.ruleset import DEFAULT_RULES
from monitor.scoring import Scorer
from monitor.scoring.params import PARAMS
from monitor.vitals import METRIC_IDS
from simulators.patients import GLUCOSE_EVENTS, SCENARIOS, Patient
from simulators.seeds import REPORTING_SEED, SIMULATOR_DEPENDENT, TUNING_SEEDS

TECHNICAL = (".stale", ".flatline", "device.", "system.")
AFTER_EVENT_S = 3600.0


@dataclass(frozen=True, slots=True)
class Alarm:
    t: float
    code: str
    priority: str


def family_of_code(code: str) -> str:
    return "glucose" if code.startswith("glucose.") or code.startswith("ar2.") else "cardio"


def family_of_event(kind: str) -> str:
    return "glucose" if kind in GLUCOSE_EVENTS else "cardio"


def clinical(code: str) -> bool:
    return not any(code.endswith(x) or code.startswith(x) for x in TECHNICAL)


def wardwatch_alarms(p: Patient, ack_after: float = 120.0) -> list[Alarm]:
    """The alarms wardwatch raises for one patient's streams (each alarm's first firing; a
    new episode is a new alarm), with a responder acknowledging each ``ack_after`` s
    after it sounds (0: nobody answers, so a latched alarm hides later episodes)."""
    scorer = Scorer()
    engine = AlarmEngine(settings=AlarmSettings(escalate_high_s=0, escalate_medium_s=0),
                         ack_after=ack_after)
    sid, metric, ts, vs = [], [], [], []
    for name, (t, v) in p.streams.items():
        mid = METRIC_IDS[name]
        s = scorer.streams.index(p.ward, p.bed, mid)
        sid.append(np.full(t.size, s))
        metric.append(np.full(t.size, mid))
        ts.append(t)
        vs.append(v)
    batch = scorer.score(np.concatenate(sid), np.concatenate(metric), np.concatenate(ts),
                         np.concatenate(vs), float(np.concatenate(ts).max()))
    seen: set[str] = set()
    out = []
    for _, ev in engine.update(batch, scorer.streams):
        if ev.state == "firing" and ev.id not in seen:
            seen.add(ev.id)
            out.append(Alarm(ev.t, ev.code, ev.priority))
    return out


def threshold_alarms(p: Patient) -> list[Alarm]:
    """Plain bands on raw values: an alarm on every entry into a more severe band."""
    out = []
    for name, (t, v) in p.streams.items():
        rule = RULES.get(METRIC_IDS[name])
        if rule is None:
            continue
        order = np.argsort(t, kind="stable")
        normal = next(i for i, b in enumerate(rule.bands) if b.code is None)
        prev_sev = 0
        for tt, vv in zip(t[order].tolist(), v[order].tolist(), strict=True):
            b = rule.band_of(vv)
            sev = abs(b - normal)
            band = rule.bands[b]
            if sev > prev_sev and band.code is not None and band.priority is not None:
                out.append(Alarm(tt, band.code, band.priority))
            prev_sev = sev
    return sorted(out, key=lambda a: a.t)


def ar2_alarms(p: Patient) -> list[Alarm]:
    """Nightscout's AR2 low-glucose forecast, 30 min ahead, on the CGM stream."""
    if "glucose" not in p.streams:
        return []
    t, v = p.streams["glucose"]
    order = np.argsort(t)
    t, v = t[order], v[order]
    out = []
    low = False
    for i in range(1, t.size):
        if not 240 <= t[i] - t[i - 1] <= 360 or v[i] <= 0 or v[i - 1] <= 0:
            low = False
            continue
        x1, x0 = math.log(v[i] / 140.0), math.log(v[i - 1] / 140.0)
        for _ in range(6):  # 6 × 5 min
            x1, x0 = 1.716 * x1 - 0.723 * x0, x1
        predicted = 140.0 * math.exp(x1)
        if predicted < 70.0 and not low:
            out.append(Alarm(float(t[i]), "ar2.low.predicted", "medium"))
        low = predicted < 70.0
    return out


def _river_targets() -> dict[str, list[tuple[str, float, float]]]:
    """Per metric, wardwatch's predictive rules as (side, threshold, window in seconds):
    the thresholds the kernel predicts crossings of, the windows the rules allow."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    for rule in DEFAULT_RULES:
        if rule.signal in ("tlo", "thi"):
            side = "low" if rule.signal == "tlo" else "high"
            p = PARAMS[rule.source]
            out.setdefault(rule.source, []).append(
                (side, p.low if side == "low" else p.high, rule.levels[0].threshold * 60.0))
    return out


def river_alarms(p: Patient) -> list[Alarm]:
    """river's online SNARIMAX(2,1,0) per stream, on the medians of the stream's
    forecasting grid (HR 1 min, NIBP 15 min, CGM 5 min), alarming when its forecast
    crosses a threshold of wardwatch's predictive rules within that rule's window."""
    from river import time_series

    out = []
    for name, targets in _river_targets().items():
        if name not in p.streams:
            continue
        t, v = p.streams[name]
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        step = PARAMS[name].grid_s
        cut = np.flatnonzero(np.diff(np.floor(t / step))) + 1
        t = np.array([float(x[-1]) for x in np.split(t, cut)])
        v = np.array([float(np.median(x)) for x in np.split(v, cut)])
        horizon = max(1, math.ceil(max(w for _, _, w in targets) / step))
        model: Any = time_series.SNARIMAX(p=2, d=1, q=0)
        state: set[str] = set()
        for k, (tt, vv) in enumerate(zip(t.tolist(), v.tolist(), strict=True)):
            model.learn_one(vv)
            if k < 10:
                continue
            path = model.forecast(horizon=horizon)
            now = set()
            for side, thr, window in targets:
                ahead = path[:max(1, math.ceil(window / step))]
                if (min(ahead) <= thr) if side == "low" else (max(ahead) >= thr):
                    now.add(side)
            out += [Alarm(tt, f"{name}.river.{side}", "medium") for side in sorted(now - state)]
            state = now
    return sorted(out, key=lambda a: a.t)


DETECTORS = {"wardwatch": wardwatch_alarms, "thresholds": threshold_alarms}


@dataclass
class Tally:
    """Figures for one detector."""

    # kind → (lead or None when missed, whether the event is predictable)
    events: dict[str, list[tuple[float | None, bool]]] = field(default_factory=dict)
    false_alarms: dict[str, int] = field(default_factory=lambda: {"cardio": 0, "glucose": 0})
    alarms: int = 0


def score_patient(p: Patient, alarms: list[Alarm], tally: Tally) -> None:
    clinical_alarms = [a for a in alarms if clinical(a.code)]
    tally.alarms += len(clinical_alarms)
    windows = [(family_of_event(e.kind), e.onset, e.end + AFTER_EVENT_S) for e in p.events]
    for a in clinical_alarms:
        fam = family_of_code(a.code)
        if not any(f == fam and lo <= a.t <= hi for f, lo, hi in windows):
            tally.false_alarms[fam] += 1
    for e in p.events:
        if math.isnan(e.crossing):
            continue  # a subclinical event: neither required nor false
        fam = family_of_event(e.kind)
        hits = [a.t for a in clinical_alarms if family_of_code(a.code) == fam
                and e.onset <= a.t <= e.end]
        lead = (e.crossing - min(hits)) / 60.0 if hits else None
        tally.events.setdefault(e.kind, []).append((lead, e.predictable))


def _leads(found: list[float]) -> tuple[float | None, float | None]:
    if not found:
        return None, None
    return float(np.median(found)), float(np.percentile(found, 10))


def _summary(tally: Tally, patient_days: float, glucose_days: float) -> dict[str, Any]:
    out: dict[str, Any] = {"alarms_per_patient_day": tally.alarms / patient_days,
                           "false_alarms_per_patient_day":
                               sum(tally.false_alarms.values()) / patient_days,
                           "events": {}}
    pooled: list[float] = []
    pooled_n = 0
    for kind in SCENARIOS[1:]:
        leads = tally.events.get(kind, [])
        found = [x for x, _ in leads if x is not None]
        pred = [x for x, ok in leads if ok]
        pred_found = [x for x in pred if x is not None]
        pooled += pred_found
        pooled_n += len(pred)
        fam = family_of_event(kind)
        days = glucose_days if fam == "glucose" else patient_days
        median, p10 = _leads(found)
        pmedian, pp10 = _leads(pred_found)
        out["events"][kind] = {
            "n": len(leads),
            "sensitivity": len(found) / len(leads) if leads else None,
            "lead_time_median_min": median,
            "lead_time_p10_min": p10,
            "predictable": len(pred),
            "sensitivity_predictable": len(pred_found) / len(pred) if pred else None,
            "lead_time_median_min_predictable": pmedian,
            "lead_time_p10_min_predictable": pp10,
            "false_alarms_per_patient_day": tally.false_alarms[fam] / max(days, 1e-9),
            # per event, for plots: minutes (None: missed) and whether it was predictable
            "leads_min": [x for x, _ in leads],
            "leads_predictable": [ok for _, ok in leads],
        }
    median, p10 = _leads(pooled)
    out["predictable"] = {"n": pooled_n, "sensitivity": len(pooled) / pooled_n if pooled_n
                          else None, "lead_time_median_min": median, "lead_time_p10_min": p10}
    return out


def evaluate(patients: Iterable[Patient], *, detectors: dict[str, Any] | None = None,
             ack_after: float = 120.0, progress: Any = None) -> dict[str, Any]:
    """Figures per detector and event type (the JSON of ``wardwatch evaluate``)."""
    detectors = detectors or {**DETECTORS, "ar2": ar2_alarms, "river": river_alarms,
                              "wardwatch": partial(wardwatch_alarms, ack_after=ack_after)}
    tallies = {name: Tally() for name in detectors}
    patient_days = glucose_days = 0.0
    n = 0
    for p in patients:
        n += 1
        patient_days += p.days
        if "glucose" in p.streams:
            glucose_days += p.days
        for name, fn in detectors.items():
            score_patient(p, fn(p), tallies[name])
        if progress is not None:
            progress()
    result = {name: _summary(t, patient_days, glucose_days) for name, t in tallies.items()}
    return {"patients": n, "patient_days": patient_days, "ack_after_s": ack_after,
            "glucose_patient_days": glucose_days, "detectors": result}


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def markdown(result: dict[str, Any]) -> str:
    """The report: one table per event type, detectors side by side."""
    det = result["detectors"]
    names = list(det)
    seed = result.get("seed")
    which = ("" if seed is None else f", seed {seed}" + (
        " (the reporting seed)" if seed == REPORTING_SEED else
        " (a tuning seed)" if seed in TUNING_SEEDS else " (not a tuning seed)"))
    lines = [f"# wardwatch evaluation — {result['patients']} patients, "
             f"{result['patient_days']:g} patient-days{which}", "",
             f"Responder: each alarm acknowledged {result.get('ack_after_s', 0):g} s after it "
             "sounds (0: nobody answers).", ""]
    lines += ["| detector | alarms / patient-day | false alarms / patient-day | "
              "predictable events: sensitivity | median lead (min) | 10th pct lead (min) |",
              "|---|---|---|---|---|---|"]
    for name in names:
        d = det[name]
        pr = d["predictable"]
        lines.append(f"| {name} | {d['alarms_per_patient_day']:.2f} | "
                     f"{d['false_alarms_per_patient_day']:.2f} | "
                     f"{_fmt(pr['sensitivity'], '.2f')} | "
                     f"{_fmt(pr['lead_time_median_min'], '.1f')} | "
                     f"{_fmt(pr['lead_time_p10_min'], '.1f')} |")
    lines += ["", "Lead time: minutes from the first alarm of the event's family to the true "
              "value crossing the clinical threshold (negative: after it). *Predictable*: the "
              "devices show the event at least 30 min before that crossing.", "",
              "Choices that depend on the simulator's own constants (facts of the simulator, "
              "not of patients):", ""]
    lines += [f"* {c}" for c in SIMULATOR_DEPENDENT]
    for kind in SCENARIOS[1:]:
        lines += ["", f"## {kind}", "",
                  "| detector | events | sensitivity | median lead (min) | 10th pct lead (min) "
                  "| predictable | their median lead (min) |",
                  "|---|---|---|---|---|---|---|"]
        for name in names:
            e = det[name]["events"][kind]
            lines.append(f"| {name} | {e['n']} | {_fmt(e['sensitivity'], '.2f')} | "
                         f"{_fmt(e['lead_time_median_min'], '.1f')} | "
                         f"{_fmt(e['lead_time_p10_min'], '.1f')} | {e['predictable']} | "
                         f"{_fmt(e['lead_time_median_min_predictable'], '.1f')} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "Alarm",
    "ar2_alarms",
    "evaluate",
    "markdown",
    "river_alarms",
    "threshold_alarms",
    "wardwatch_alarms",
]
