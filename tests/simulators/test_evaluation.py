"""The default cohort (200 patient-days, seed 20261123, never used for tuning) in CI.

Asserts the issue's targets that wardwatch meets today; the lead-time target is not met
yet and is reported in the README instead of asserted.
"""

from __future__ import annotations

from simulators.evaluate import evaluate
from simulators.patients import cohort

DETERIORATION = ("sepsis", "haemorrhage", "hypertensive_crisis", "bradycardia")


def test_default_cohort_meets_the_sensitivity_and_false_alarm_targets() -> None:
    result = evaluate(cohort(200, seed=20261123))
    ww = result["detectors"]["wardwatch"]
    plain = result["detectors"]["thresholds"]
    for kind in (*DETERIORATION, "hypoglycaemia"):
        e = ww["events"][kind]
        assert e["n"] >= 8, kind  # the cohort has enough of each to mean something
        assert e["sensitivity"] >= 0.95, kind
        assert e["sensitivity"] >= plain["events"][kind]["sensitivity"], kind
    assert ww["false_alarms_per_patient_day"] <= 1.0
    assert ww["false_alarms_per_patient_day"] < plain["false_alarms_per_patient_day"]
