"""What wardwatch knows about each vital sign: canonical unit, accepted UCUM units, ranges.

The metric id (position in :data:`METRICS`) is what the kernels see; names are for
people and the wire.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Metric:
    """One vital sign as it travels through wardwatch.

    ``units`` maps each accepted UCUM code to the factor that converts it to the
    canonical unit. ``device_range`` bounds what any bedside device can report; values
    outside it are rejected on ingest as ``implausible``. It is deliberately wide:
    an HR of 0 or an SBP of 30 is a clinical emergency, not bad input.
    """

    name: str
    label: str
    unit: str
    units: dict[str, float]
    device_range: tuple[float, float]


_PER_MIN = {"/min": 1.0, "1/min": 1.0, "{beats}/min": 1.0, "{beat}/min": 1.0}
# 1 kPa = 7.50062 mm[Hg]
_PRESSURE = {"mm[Hg]": 1.0, "kPa": 7.500617}
# Glucose molar mass 180.156 g/mol: 1 mmol/L = 18.0156 mg/dL.
_GLUCOSE = {"mg/dL": 1.0, "mmol/L": 18.0156}

METRICS: tuple[Metric, ...] = (
    Metric("hr", "Heart rate", "/min", _PER_MIN, (0.0, 350.0)),
    Metric("sbp", "Systolic BP", "mm[Hg]", _PRESSURE, (0.0, 400.0)),
    Metric("dbp", "Diastolic BP", "mm[Hg]", _PRESSURE, (0.0, 300.0)),
    Metric("map", "Mean arterial pressure", "mm[Hg]", _PRESSURE, (0.0, 350.0)),
    Metric("glucose", "Glucose", "mg/dL", _GLUCOSE, (0.0, 1500.0)),
)

METRIC_IDS: dict[str, int] = {m.name: i for i, m in enumerate(METRICS)}
HR, SBP, DBP, MAP, GLUCOSE = (METRIC_IDS[n] for n in ("hr", "sbp", "dbp", "map", "glucose"))
