"""A small simulated ward for the demo: a few beds with simple, seeded storylines.

Each bed follows one storyline (stable, tachycardia, shock, hypoglycaemia, ...) on
simulated time. This is deliberately simple; the coupled virtual patients with ground
truth come with the simulators issue (#5).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

STORYLINES = ("stable", "tachycardia", "shock", "hypoglycaemia", "artifacts",
              "hyperglycaemia", "bradycardia")

HR_EVERY_S = 5.0
NIBP_EVERY_S = 300.0
CGM_EVERY_S = 300.0


@dataclass(frozen=True, slots=True)
class Bed:
    ward: str
    bed: str
    storyline: str
    hr0: float
    sbp0: float
    glucose0: float


def make_ward(beds: int, *, ward: str = "4A", seed: int = 7) -> list[Bed]:
    """``beds`` beds cycling through the storylines, with seeded baselines."""
    rng = np.random.default_rng(seed)
    return [
        Bed(ward, str(i + 1), STORYLINES[i % len(STORYLINES)],
            float(rng.uniform(65, 85)), float(rng.uniform(115, 135)), float(rng.uniform(100, 140)))
        for i in range(beds)
    ]


EARLY_S = 300.0  # simulated: 10 s of the demo at its default 30x


def _ramp(t: float, onset: float, minutes: float) -> float:
    """0 before onset, rising linearly to 1 over ``minutes``."""
    return min(1.0, max(0.0, (t - onset) / (minutes * 60.0)))


def vitals_at(bed: Bed, t: float, rng: np.random.Generator) -> dict[str, float]:
    """The bed's true values ``t`` simulated seconds after the start."""
    hr, sbp, glu = bed.hr0, bed.sbp0, bed.glucose0
    circadian = math.sin(2 * math.pi * t / 86_400.0)
    hr += 3 * circadian + rng.normal(0, 1.5)
    sbp += 4 * circadian + rng.normal(0, 3)
    glu += rng.normal(0, 2)
    s = bed.storyline
    # every storyline is under way within EARLY_S, so a short demo shows alarms
    if s == "tachycardia":
        hr += 65 * _ramp(t, 120, 15)
    elif s == "shock":
        k = _ramp(t, 180, 20)
        hr += 55 * k
        sbp -= 45 * k
    elif s == "hypoglycaemia":
        glu -= 3.0 * max(0.0, (t - 120) / 60.0)  # 3 mg/dL per minute
        glu = max(glu, 38.0)
    elif s == "hyperglycaemia":
        glu += 2.5 * max(0.0, (t - 120) / 60.0)
        glu = min(glu, 420.0)
    elif s == "bradycardia":
        hr -= 40 * _ramp(t, 120, 12)
    elif s == "artifacts" and rng.random() < 0.01:
        hr = 250.0  # a motion spike
    dbp = sbp * 0.62 + rng.normal(0, 2)
    return {"hr": hr, "sbp": sbp, "dbp": dbp, "map": dbp + (sbp - dbp) / 3, "glucose": glu}


Due = tuple[float, Bed, list[dict[str, object]]]


def observations(beds: list[Bed], *, start: float, seed: int = 7,
                 step_s: float = HR_EVERY_S) -> Iterator[Due]:
    """Forever: (simulated time, bed, wire-contract observations due at that time)."""
    rng = np.random.default_rng(seed + 1)
    k = 0
    while True:
        el = k * step_s
        t = start + el
        for bed in beds:
            v = vitals_at(bed, el, rng)
            obs: list[dict[str, object]] = [
                {"metric": "hr", "t": t, "v": round(v["hr"]), "unit": "/min"}
            ]
            if el % NIBP_EVERY_S == 0:
                obs += [{"metric": m, "t": t, "v": round(v[m]), "unit": "mm[Hg]"}
                        for m in ("sbp", "dbp", "map")]
            if el % CGM_EVERY_S == 0:
                obs.append({"metric": "glucose", "t": t, "v": round(v["glucose"]),
                            "unit": "mg/dL"})
            yield t, bed, obs
        k += 1
