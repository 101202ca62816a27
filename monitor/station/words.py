"""Alarms in clinical words, for the station page: one table, tested against every rule.

The wire format keeps its codes (``hr.news2.3``); a nurse reads "Tachycardia 135 /min
(NEWS2 pulse 3; limit > 130 /min)". Three rules keep the words honest:

* a value is shown with as many decimals as it takes for the shown value to compare with
  the shown limit the way the real one did (130.4 against "> 130" is "130.4", never "130");
* a value that no longer meets the limit but has not cleared it (hysteresis) says where the
  alarm clears, so "shock index 0.97 (limit ≥ 1.00, clears below 0.90)" is not a contradiction;
* units are written as clinicians write them (mmHg, /min, mg/dL or mmol/L per ward).
"""

from __future__ import annotations

import re

from monitor.ruleset import Level, Rule
from monitor.vitals import GLUCOSE, METRICS

MMOL_PER_MGDL = 1 / METRICS[GLUCOSE].units["mmol/L"]  # the wire's own conversion

# What each rule watches, in words (by the rule's name: one name, one direction).
RULE_WORDS: dict[str, str] = {
    "hr.high": "Tachycardia",
    "hr.low": "Bradycardia",
    "sbp.low": "Low systolic BP",
    "sbp.high": "High systolic BP",
    "map.low": "Low mean arterial pressure",
    "glucose.low": "Hypoglycaemia",
    "glucose.high": "Hyperglycaemia",
    "glucose.predicted": "Hypoglycaemia predicted",
    "glucose.predicted.high": "Hyperglycaemia predicted",
    "sbp.predicted": "Low systolic BP predicted",
    "sbp.predicted.high": "High systolic BP predicted",
    "hr.predicted": "Bradycardia predicted",
    "glucose.fall": "Glucose falling fast",
    "glucose.rise": "Glucose rising fast",
    "hr.drift": "Sustained heart-rate drift",
    "sbp.drift": "Sustained systolic BP drift",
    "news2": "NEWS2 partial score",
    "shock_index": "Shock index high",
    "device.offline": "Bedside device offline",
    "system.history": "History store failing",
    "system.alerts": "Alarm delivery failing",
    "system.internal": "Internal error",
    "system.backlog": "Ingest falling behind",
    **{f"{m.name}.stale": f"No {m.label.lower()} data" for m in METRICS},
    **{f"{m.name}.flatline": f"{m.label} flatline" for m in METRICS},
}

# Levels whose words say more than their rule's.
LEVEL_WORDS: dict[str, str] = {
    "hr.extreme.high": "Extreme tachycardia",
    "hr.extreme.low": "Extreme bradycardia",
    "glucose.low.l1": "Hypoglycaemia, level 1",
    "glucose.low.l2": "Hypoglycaemia, level 2",
    "glucose.high.l1": "Hyperglycaemia, level 1",
    "glucose.high.l2": "Hyperglycaemia, level 2",
    "news2.urgent": "NEWS2 partial score: urgent response",
    "news2.emergency": "NEWS2 partial score: emergency response",
}

_NEWS2_PART = {"hr": "pulse", "sbp": "systolic BP"}
_OP = {">": ">", ">=": "≥", "<": "<", "<=": "≤"}
_EXIT_OP_SYM = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}
_EXIT_OP = {">": "at or below", ">=": "below", "<": "at or above", "<=": "above"}


def unit_text(metric: str, mmol: bool = False) -> str:
    """A metric's unit as clinicians write it."""
    if metric == "glucose":
        return "mmol/L" if mmol else "mg/dL"
    return clinical_units(next((m.unit for m in METRICS if m.name == metric), ""))


def severity(rule: Rule, level: Level) -> int:
    """Triage order within a priority: 0 extreme, 1 NEWS2 3, 2 value, 3 predicted, 4 technical."""
    if rule.technical:
        return 4
    if rule.signal in ("tlo", "thi", "slope", "drift"):
        return 3
    if ".extreme." in level.code:
        return 0
    if level.code.endswith(".news2.3") or level.code == "news2.emergency":
        return 1
    return 2


def condition(rule: Rule, level: Level) -> str:
    """The condition's name in words."""
    return LEVEL_WORDS.get(level.code) or RULE_WORDS[rule.name]


def _compare(x: float, op: str, thr: float) -> bool:
    return Level("", "", op, thr).enters(x)


def shown(x: float, op: str, thr: float, scale: float = 1.0,
          decimals: int = 0) -> tuple[str, str]:
    """``x`` and its limit ``thr`` (base units) as shown in ``scale`` units: with the fewest
    decimals, from the unit's usual ``decimals`` up, at which the shown value compares with
    the shown limit as ``x`` does with ``thr``. 130.4 against 130 is "130.4" / "130"; in
    mmol/L, 181 mg/dL against 180 is "10.05" / "9.99", since both round to 10.0. Event
    values carry two decimals, so a few more always suffice."""
    truth = _compare(x, op, thr)
    for d in range(decimals, 7):
        if _compare(round(x * scale, d), op, round(thr * scale, d)) == truth:
            value, limit = f"{x * scale:.{d}f}", f"{thr * scale:.{d}f}"
            for _ in range(d - decimals):  # a round limit stays round: 130, not 130.0
                if not limit.endswith("0"):
                    break
                limit = limit[:-1].removesuffix(".")
            return value, limit
    return f"{x * scale!r}", f"{thr * scale!r}"


def describe(rule: Rule, level: Level, value: float | None, *, mmol: bool = False) -> str:
    """The alarm as a nurse reads it, at ``value`` (the event's value)."""
    words = condition(rule, level)
    metric = rule.source or rule.metric
    glucose = metric == "glucose"
    scale = MMOL_PER_MGDL if glucose and mmol else 1.0
    decimals = 1 if scale != 1.0 else 0
    unit = unit_text(metric, mmol)
    op, thr = level.op, level.threshold
    if value is None or value != value:
        return f"{words}: {clinical_units(level.text, mmol)}"
    if rule.signal == "value":
        v, limit = shown(value, op, thr, scale, decimals)
        news2 = ""
        if ".news2." in level.code:
            news2 = f"NEWS2 {_NEWS2_PART[metric]} {level.code.rsplit('.', 1)[1]}; "
        clears = _clears(level, value, scale, decimals, f" {unit}")
        return f"{words} {v} {unit} ({news2}limit {_OP[op]} {limit} {unit}{clears})"
    if rule.signal in ("news2", "shock"):
        d = 0 if rule.signal == "news2" else 2
        v, limit = shown(value, op, thr, 1.0, d)
        return f"{words} {v} (limit {_OP[op]} {limit}{_clears(level, value, 1.0, d, '')})"
    if rule.signal == "stale":  # seconds, or minutes for limits of two minutes and more
        unit, scale, decimals = ("s", 1.0, 0) if thr < 120 else ("min", 1 / 60, 1)
        v, limit = shown(value, op, thr, scale, decimals)
        return f"{words} for {v} {unit} (limit {_OP[op]} {limit} {unit})"
    if rule.signal in ("tlo", "thi", "slope", "drift", "flat"):
        label = next((m.label for m in METRICS if m.name == metric), metric)
        v = f"{value * scale:.{decimals}f}"
        return f"{words}: {label.lower()} {v} {unit}; {clinical_units(level.text, mmol)}"
    return f"{words}: {clinical_units(level.text, mmol)}"


def _clears(level: Level, value: float, scale: float, decimals: int, unit: str) -> str:
    """Where an alarm held by hysteresis (its value no longer meets the limit) clears."""
    if level.enters(value) or not level.hysteresis:
        return ""
    op, thr = level.op, level.threshold
    exit_thr = thr - level.hysteresis if op in (">", ">=") else thr + level.hysteresis
    _, exit_text = shown(value, _EXIT_OP_SYM[op], exit_thr, scale, decimals)
    return f", clears {_EXIT_OP[op]} {exit_text}{unit}"


def clinical_units(text: str, mmol: bool = False) -> str:
    """A text with units as clinicians write them (mmHg; glucose in mmol/L if ``mmol``)."""
    out = text.replace("mm[Hg]", "mmHg")
    if mmol:
        out = re.sub(r"(\d+(?:\.\d+)?) mg/dL",
                     lambda m: f"{float(m.group(1)) * MMOL_PER_MGDL:.1f} mmol/L", out)
    return out


def value_text(metric: str, value: float | None, *, mmol: bool = False) -> str:
    """A current vital with its unit, as the tiles show it."""
    if value is None or value != value:
        return "—"
    unit = unit_text(metric, mmol)
    if metric == "glucose" and mmol:
        return f"{value * MMOL_PER_MGDL:.1f} {unit}"
    return f"{value:.0f} {unit}" if abs(value) >= 10 else f"{value:.1f} {unit}"


__all__ = ["LEVEL_WORDS", "RULE_WORDS", "clinical_units", "condition", "describe", "severity",
           "shown",
           "unit_text", "value_text"]
