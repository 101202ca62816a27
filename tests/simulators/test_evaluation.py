"""The simulated cohort in CI: the reporting seed, and a fresh seed drawn now.

Asserts the issue's targets on the reporting seed (never used for tuning): sensitivity,
false alarms (absolute and against plain thresholds), and the median lead over the
events that can be predicted (the devices show them at least 30 min before the crossing;
``simulators.patients.Event.predictable``). The same figures for a cohort from a seed
drawn at test time are written beside them (``test-artifacts/evaluation-seeds.md``) and
held to the same targets, so a figure that holds only for the reporting seed fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulators.evaluate import evaluate
from simulators.patients import cohort
from simulators.seeds import REPORTING_SEED, TUNING_SEEDS, fresh_seed

DETERIORATION = ("sepsis", "haemorrhage", "hypertensive_crisis", "bradycardia")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_the_reporting_seed_was_never_a_tuning_seed() -> None:
    assert REPORTING_SEED not in TUNING_SEEDS
    assert fresh_seed() not in (*TUNING_SEEDS, REPORTING_SEED)


def _check(result: dict[str, Any], min_n: int = 8) -> None:
    ww = result["detectors"]["wardwatch"]
    plain = result["detectors"]["thresholds"]
    for kind in (*DETERIORATION, "hypoglycaemia"):
        e = ww["events"][kind]
        assert e["n"] >= min_n, kind  # the cohort has enough of each to mean something
        assert e["sensitivity"] >= 0.95, kind
        assert e["sensitivity"] >= plain["events"][kind]["sensitivity"], kind
    assert ww["false_alarms_per_patient_day"] <= 1.0
    assert ww["false_alarms_per_patient_day"] < plain["false_alarms_per_patient_day"]
    predictable = ww["predictable"]
    assert predictable["n"] >= 30
    assert predictable["sensitivity"] >= 0.95
    assert predictable["lead_time_median_min"] >= 15.0
    # the predictive glucose low warns earlier than Nightscout's AR2 on the same events
    hypo = ww["events"]["hypoglycaemia"]
    ar2 = result["detectors"]["ar2"]["events"]["hypoglycaemia"]
    assert hypo["lead_time_median_min"] > ar2["lead_time_median_min"]


def _row(seed: int, r: dict[str, Any]) -> str:
    ww = r["detectors"]["wardwatch"]
    sens = min(ww["events"][k]["sensitivity"] for k in (*DETERIORATION, "hypoglycaemia"))
    pr = ww["predictable"]
    return (f"| {seed} | {ww['alarms_per_patient_day']:.2f} | "
            f"{ww['false_alarms_per_patient_day']:.2f} | {sens:.2f} | {pr['n']} | "
            f"{pr['sensitivity']:.2f} | {pr['lead_time_median_min']:.1f} |")


@pytest.fixture(scope="module")
def results() -> dict[int, dict[str, Any]]:
    seeds = [REPORTING_SEED, fresh_seed()]
    out = {seed: evaluate(cohort(200, seed=seed)) for seed in seeds}
    ARTIFACTS.mkdir(exist_ok=True)
    lines = ["| seed | alarms / patient-day | false alarms / patient-day | lowest sensitivity "
             "| predictable events | their sensitivity | their median lead (min) |",
             "|---|---|---|---|---|---|---|"]
    lines += [_row(seed, r) for seed, r in out.items()]
    text = "\n".join(lines) + "\n"
    (ARTIFACTS / "evaluation-seeds.md").write_text(text)
    print(text)
    return out


def test_the_reporting_seed_meets_the_targets(results: dict[int, dict[str, Any]]) -> None:
    _check(results[REPORTING_SEED])


def test_a_fresh_seed_meets_them_too(results: dict[int, dict[str, Any]]) -> None:
    (seed,) = [s for s in results if s != REPORTING_SEED]
    # scenarios come in fixed proportions, but how many of them cross a threshold varies
    _check(results[seed], min_n=5)
