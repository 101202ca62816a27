"""The alarm rule set: which conditions raise which alarm, after how long, and how they clear.

A :class:`Rule` watches one *signal* of a bed (a vital's value, its predicted time to a
threshold, its slope, the NEWS2 aggregate, the age of a stream...) and has one or more
nested :class:`Level` s, least severe first: a value that meets a more severe level
meets the milder ones too (HR 135 is above 90, 110 and 130). One alarm per (bed, rule)
is active at a time, at the most severe level that has held for its delay; the
lifecycle is in :mod:`monitor.lifecycle`.

Each level enters on its threshold and clears only past ``threshold ∓ hysteresis``, so a
value hovering on a limit does not flap. ``delay_s`` is the persistence asked of the
condition in observation time before it fires: zero for life-threatening values and for
sparse, deliberate measurements (NIBP every 15 min, CGM every 5 min), where waiting for
the next reading would delay the alarm by a whole cadence.

Defaults are configured per ward (``[rules."<ward>"."<code>"]`` in the config file, ``*``
for every ward) and per patient at admission (``wardwatch/v1/admit/{ward}/{bed}``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from monitor.alarms import PRIORITIES
from monitor.errors import ConfigError
from monitor.rules import RULES, BandRule
from monitor.scoring.params import PARAMS
from monitor.vitals import METRICS

# NEWS2 parameters wardwatch does not receive: named in every aggregate alarm.
NEWS2_ABSENT = ("respiration rate", "SpO2", "temperature", "consciousness", "supplemental oxygen")
NEWS2_PULSE_SCORE = (3, 1, 0, 1, 2, 3)  # by NEWS2_PULSE band
NEWS2_SBP_SCORE = (3, 2, 1, 0, 3)  # by NEWS2_SBP band


@dataclass(frozen=True, slots=True)
class Level:
    """One alarm condition: ``signal op threshold``, held for ``delay_s``."""

    code: str
    priority: str
    op: str  # ">", ">=", "<", "<="
    threshold: float
    hysteresis: float = 0.0
    delay_s: float = 0.0
    text: str = ""
    on: bool = True  # off: available, raised only where a ward or patient enables it

    def enters(self, x: float) -> bool:
        op, thr = self.op, self.threshold
        if op == ">":
            return x > thr
        if op == ">=":
            return x >= thr
        if op == "<":
            return x < thr
        return x <= thr

    def exits(self, x: float) -> bool:
        """The condition is clearly gone: ``enters`` fails even with the limit moved by
        ``hysteresis`` towards normal. NaN (no information) never exits."""
        op, thr, h = self.op, self.threshold, self.hysteresis
        if op == ">":
            return x <= thr - h
        if op == ">=":
            return x < thr - h
        if op == "<":
            return x >= thr + h
        return x > thr + h


@dataclass(frozen=True, slots=True)
class Rule:
    """Nested levels over one signal of one bed; at most one alarm of it is active."""

    name: str  # "hr.high": the state machine's key within a bed
    metric: str  # the alert's ``metric`` field: a vital, or news2 / shock_index / device / system
    # value | tlo | thi | slope | drift | news2 | shock | flat | stale | offline | system
    signal: str
    source: str  # the vital the signal comes from ("" for bed- and system-level rules)
    levels: tuple[Level, ...]
    technical: bool = False  # technical alarms never latch

    def level_index(self, code: str) -> int | None:
        for i, lv in enumerate(self.levels):
            if lv.code == code:
                return i
        return None


# Awareness-level alarms that the evaluation (wardwatch evaluate) found to be most of the
# false alarms on stable patients: available, off unless a ward or patient turns them on.
# They still count in the NEWS2 aggregate.
OFF_BY_DEFAULT = frozenset({"hr.news2.1", "sbp.news2.1", "glucose.high.l1"})


def _band_levels(rule: BandRule, side: str, delays: Mapping[str, float],
                 hysteresis: float) -> tuple[Level, ...]:
    """The levels on one side of a band rule's normal band, least severe first."""
    normal = next(i for i, b in enumerate(rule.bands) if b.code is None)
    out: list[Level] = []
    if side == "high":
        for b in range(normal + 1, len(rule.bands)):
            band, e = rule.bands[b], b - 1
            assert band.code is not None and band.priority is not None
            out.append(Level(band.code, band.priority, ">=" if rule.upper[e] else ">",
                             rule.edges[e], hysteresis, delays[band.code], band.text,
                             band.code not in OFF_BY_DEFAULT))
    else:
        for b in range(normal - 1, -1, -1):
            band = rule.bands[b]
            assert band.code is not None and band.priority is not None
            out.append(Level(band.code, band.priority, "<" if rule.upper[b] else "<=",
                             rule.edges[b], hysteresis, delays[band.code], band.text,
                             band.code not in OFF_BY_DEFAULT))
    return tuple(out)


def _value_rules() -> list[Rule]:
    hr, sbp, mp, glu = (RULES[i] for i in sorted(RULES))
    assert (hr.metric, sbp.metric, mp.metric, glu.metric) == (0, 1, 3, 4)
    # Delays, in observation time. HR numerics arrive every 1-5 s and the Hampel filter
    # already holds a step back for ~8 samples; the mildest bands wait longest.
    hr_high = _band_levels(hr, "high", {"hr.news2.1": 300, "hr.news2.2": 60, "hr.news2.3": 30}, 3)
    hr_low = _band_levels(hr, "low", {"hr.news2.1": 300, "hr.news2.3": 10}, 3)
    extreme_hi = Level("hr.extreme.high", "high", ">=", 160, 5, 0,
                       "extreme tachycardia (≥160 /min)")
    extreme_lo = Level("hr.extreme.low", "high", "<", 30, 3, 0, "extreme bradycardia (<30 /min)")
    zero: dict[str, float] = {b.code: 0.0 for r in (sbp, mp, glu) for b in r.bands if b.code}
    glu_delays = zero | {"glucose.high.l1": 1800.0, "glucose.high.l2": 900.0}
    # SBP 91-100 (subscore 2) on one cuff reading is what a nurse re-checks, not acts on:
    # it sounds when a reading at least 10 min later confirms it (the evaluation found
    # single low-normal readings to be most false alarms). ≤90 sounds on the first.
    sbp_delays = zero | {"sbp.news2.2": 600.0}
    return [
        Rule("hr.high", "hr", "value", "hr", (*hr_high, extreme_hi)),
        Rule("hr.low", "hr", "value", "hr", (*hr_low, extreme_lo)),
        Rule("sbp.low", "sbp", "value", "sbp", _band_levels(sbp, "low", sbp_delays, 3)),
        Rule("sbp.high", "sbp", "value", "sbp", _band_levels(sbp, "high", zero, 3)),
        Rule("map.low", "map", "value", "map", _band_levels(mp, "low", zero, 2)),
        Rule("glucose.low", "glucose", "value", "glucose", _band_levels(glu, "low", glu_delays, 3)),
        Rule("glucose.high", "glucose", "value", "glucose",
             _band_levels(glu, "high", glu_delays, 5)),
    ]


def _clinical_rules() -> list[Rule]:
    glu, sbp, hr = PARAMS["glucose"], PARAMS["sbp"], PARAMS["hr"]
    return [
        *_value_rules(),
        # Predicted crossings, in minutes from now: the earlier of the kernel's ARIMA path
        # and a monotone Theil-Sen trend (monitor.scoring.params). Each resolves when the
        # value alarm at its threshold takes over.
        Rule("glucose.predicted", "glucose", "tlo", "glucose", (
            Level("glucose.low.predicted", "medium", "<=", 30, 15, 0,
                  f"predicted below {glu.low:g} mg/dL within 30 min"),
        )),
        Rule("glucose.predicted.high", "glucose", "thi", "glucose", (
            Level("glucose.high.predicted", "low", "<=", 30, 15, 0,
                  f"predicted above {glu.high:g} mg/dL within 30 min"),
        )),
        Rule("sbp.predicted", "sbp", "tlo", "sbp", (
            Level("sbp.low.predicted", "medium", "<=", 15, 10, 0,
                  f"predicted at or below {sbp.low:g} mm[Hg] within 15 min"),
        )),
        Rule("sbp.predicted.high", "sbp", "thi", "sbp", (
            Level("sbp.high.predicted", "medium", "<=", 30, 10, 0,
                  f"predicted at or above {sbp.high:g} mm[Hg] within 30 min"),
        )),
        Rule("hr.predicted", "hr", "tlo", "hr", (
            Level("hr.low.predicted", "medium", "<=", 15, 5, 60,
                  f"predicted at or below {hr.low:g} /min within 15 min"),
        )),
        # Rate of change: a robust (Theil-Sen) slope over the last 25 min of CGM.
        Rule("glucose.fall", "glucose", "slope", "glucose", (
            Level("glucose.fall.fast", "low", "<=", -3.0, 1.0, 0,
                  "falling faster than 3 mg/dL per min"),
        )),
        Rule("glucose.rise", "glucose", "slope", "glucose", (
            Level("glucose.rise.fast", "low", ">=", 3.0, 1.0, 0,
                  "rising faster than 3 mg/dL per min"),
        )),
        # Sustained drift: minutes since the CUSUM last decided on a shift.
        Rule("hr.drift", "hr", "drift", "hr", (
            Level("hr.drift", "low", "<=", 30, 0, 0, "sustained drift (CUSUM)", on=False),
        )),
        Rule("sbp.drift", "sbp", "drift", "sbp", (
            Level("sbp.drift", "low", "<=", 60, 0, 0, "sustained drift (CUSUM)", on=False),
        )),
        # Bed level.
        Rule("news2", "news2", "news2", "", (
            Level("news2.urgent", "medium", ">=", 5, 1, 60,
                  "NEWS2 aggregate ≥5: urgent response"),
            Level("news2.emergency", "high", ">=", 7, 1, 0,
                  "NEWS2 aggregate ≥7: emergency response"),
        )),
        Rule("shock_index", "shock_index", "shock", "", (
            Level("shock_index.high", "medium", ">=", 1.0, 0.1, 60, "shock index HR/SBP ≥1.0"),
        )),
    ]


def _technical_rules() -> list[Rule]:
    out = []
    for m in METRICS:
        gap = PARAMS[m.name].gap_s
        out.append(Rule(f"{m.name}.stale", m.name, "stale", m.name, (
            Level(f"{m.name}.stale", "medium", ">", gap, 0, 0,
                  f"no {m.label.lower()} data for over {gap / 60:g} min"),
        ), technical=True))
        out.append(Rule(f"{m.name}.flatline", m.name, "flat", m.name, (
            Level(f"{m.name}.flatline", "medium", ">=", 1, 0, 0,
                  "flatline: identical values, sensor stuck or detached"),
        ), technical=True))
    out += [
        Rule("device.offline", "device", "offline", "", (
            Level("device.offline", "medium", ">=", 1, 0, 0,
                  "bedside device offline (MQTT last will)"),
        ), technical=True),
        Rule("system.history", "system", "system", "history", (
            Level("system.history", "medium", ">", 0, 0, 30,
                  "history writes failing (InfluxDB/SQLite); records spooled on disk"),
        ), technical=True),
        Rule("system.alerts", "system", "system", "mqtt", (
            Level("system.alerts", "high", ">", 0, 0, 10,
                  "alarm delivery over MQTT failing; events kept in the outbox"),
        ), technical=True),
        Rule("system.internal", "system", "system", "internal", (
            Level("system.internal", "high", ">", 0, 0, 0,
                  "internal error: input could not be processed (dead-lettered as"
                  " internal_error); see the log"),
        ), technical=True),
        Rule("system.backlog", "system", "system", "ingest", (
            Level("system.backlog", "medium", ">=", 0.8, 0.3, 5,
                  "ingest queue over 80% full: alarms may be late"),
        ), technical=True),
    ]
    return out


DEFAULT_RULES: tuple[Rule, ...] = (*_clinical_rules(), *_technical_rules())
CODES: dict[str, str] = {lv.code: r.name for r in DEFAULT_RULES for lv in r.levels}


@dataclass(frozen=True, slots=True)
class Override:
    """A change to one alarm code; None leaves the default."""

    enabled: bool | None = None
    priority: str | None = None
    threshold: float | None = None
    hysteresis: float | None = None
    delay_s: float | None = None

    @classmethod
    def parse(cls, code: str, raw: Any, where: str) -> Override:
        if code not in CODES:
            raise ConfigError(f"{where}: unknown alarm code {code!r}")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}.{code}: expected a table of settings")
        unknown = set(raw) - {"enabled", "priority", "threshold", "hysteresis", "delay_s"}
        if unknown:
            raise ConfigError(f"{where}.{code}: unknown key(s) {', '.join(sorted(unknown))}")
        vals: dict[str, Any] = {}
        if "enabled" in raw:
            if not isinstance(raw["enabled"], bool):
                raise ConfigError(f"{where}.{code}.enabled: expected true/false")
            vals["enabled"] = raw["enabled"]
        if "priority" in raw:
            if raw["priority"] not in PRIORITIES:
                raise ConfigError(f"{where}.{code}.priority: one of {', '.join(PRIORITIES)}")
            vals["priority"] = raw["priority"]
        for key in ("threshold", "hysteresis", "delay_s"):
            if key in raw:
                v = raw[key]
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ConfigError(f"{where}.{code}.{key}: expected a number")
                if key != "threshold" and v < 0:
                    raise ConfigError(f"{where}.{code}.{key}: must be ≥ 0")
                vals[key] = float(v)
        return cls(**vals)

    def apply(self, lv: Level) -> Level | None:
        if self.enabled is False or (not lv.on and self.enabled is not True):
            return None
        return replace(
            lv,
            priority=self.priority or lv.priority,
            threshold=lv.threshold if self.threshold is None else self.threshold,
            hysteresis=lv.hysteresis if self.hysteresis is None else self.hysteresis,
            delay_s=lv.delay_s if self.delay_s is None else self.delay_s,
        )


Overrides = Mapping[str, Override]


def parse_overrides(raw: Any, where: str) -> dict[str, Override]:
    """``{code: {key: value}}`` (config table or admission message) → overrides."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table of alarm codes")
    return {str(code): Override.parse(str(code), v, where) for code, v in raw.items()}


def _resolve(overrides: Iterable[Overrides]) -> tuple[Rule, ...]:
    merged: dict[str, Override] = {}
    for layer in overrides:
        for code, ov in layer.items():
            old = merged.get(code, Override())
            merged[code] = Override(*(
                new if new is not None else prev
                for new, prev in zip(_fields(ov), _fields(old), strict=True)
            ))
    rules = []
    for r in DEFAULT_RULES:
        levels = []
        for lv in r.levels:
            new = merged.get(lv.code, Override()).apply(lv)
            if new is not None:
                levels.append(new)
        if levels:
            _check_nested(r, levels)
            rules.append(replace(r, levels=tuple(levels)))
    return tuple(rules)


def _custom(layer: Overrides) -> bool:
    return any(ov.threshold is not None or ov.enabled is False for ov in layer.values())


def _fields(o: Override) -> tuple[Any, ...]:
    return (o.enabled, o.priority, o.threshold, o.hysteresis, o.delay_s)


def _check_nested(rule: Rule, levels: list[Level]) -> None:
    thr = [lv.threshold for lv in levels]
    rising = levels[0].op in (">", ">=")
    if thr != sorted(thr, reverse=not rising):
        raise ConfigError(
            f"rule {rule.name}: thresholds must get more severe level by level "
            f"({', '.join(f'{lv.code}={lv.threshold:g}' for lv in levels)})"
        )


@dataclass
class BedRules:
    """The rules in force for one bed, indexed by the signal that feeds them."""

    rules: tuple[Rule, ...]
    by_signal: dict[tuple[str, str], tuple[Rule, ...]] = field(init=False)
    by_name: dict[str, Rule] = field(init=False)
    custom: bool = False  # thresholds differ from the defaults: no quiet-row shortcut

    def __post_init__(self) -> None:
        idx: dict[tuple[str, str], list[Rule]] = {}
        for r in self.rules:
            idx.setdefault((r.signal, r.source), []).append(r)
        self.by_signal = {k: tuple(v) for k, v in idx.items()}
        self.by_name = {r.name: r for r in self.rules}

    def get(self, signal: str, source: str = "") -> tuple[Rule, ...]:
        return self.by_signal.get((signal, source), ())


class RuleSet:
    """Defaults, then per-ward overrides (``*``: every ward), then the patient's."""

    def __init__(self, wards: Mapping[str, Overrides] | None = None) -> None:
        self.wards = dict(wards or {})
        self._cache: dict[tuple[str, str], BedRules] = {}
        self.patients: dict[tuple[str, str], Overrides] = {}
        self.version = 0  # bumped whenever a bed's rules change
        # thresholds moved or levels disabled for whole wards: their beds cannot take the
        # quiet-sample shortcut (see AlarmEngine.update)
        self.custom_wards = any(_custom(layer) for layer in self.wards.values())
        self.default = self.for_bed("", "")  # validates the ward layers' nesting

    def set_patient(self, ward: str, bed: str, overrides: Overrides | None) -> BedRules:
        """Admission (overrides) or discharge (None); returns the bed's new rules."""
        if overrides:
            self.patients[(ward, bed)] = overrides
        else:
            self.patients.pop((ward, bed), None)
        self._cache.pop((ward, bed), None)
        self.version += 1
        return self.for_bed(ward, bed)

    def custom_beds(self) -> set[tuple[str, str]]:
        """Beds whose patient overrides move thresholds or disable levels."""
        return {bed for bed, layer in self.patients.items() if _custom(layer)}

    def for_bed(self, ward: str, bed: str) -> BedRules:
        found = self._cache.get((ward, bed))
        if found is not None:
            return found
        patient = self.patients.get((ward, bed), {})
        if not patient:  # as the rest of its ward: one resolution per ward
            found = self._cache.get((ward, ""))
            if found is not None:
                self._cache[(ward, bed)] = found
                return found
        layers = [self.wards.get("*", {}), self.wards.get(ward, {}), patient]
        custom = any(_custom(layer) for layer in layers)
        rules = BedRules(_resolve(layers), custom=custom)
        self._cache[(ward, bed)] = rules
        if not patient:
            self._cache[(ward, "")] = rules
        return rules


__all__ = ["CODES", "DEFAULT_RULES", "NEWS2_ABSENT", "PRIORITIES", "BedRules", "Level",
           "Override", "Rule", "RuleSet", "parse_overrides"]
