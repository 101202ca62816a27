"""The default cohort (200 patient-days, seed 20261123, never used for tuning) in CI.

Asserts the issue's targets: sensitivity, false alarms (absolute and against plain
thresholds), and the median lead over the events that can be predicted (the devices show
them at least 30 min before the crossing; ``simulators.patients.Event.predictable``).
"""

from __future__ import annotations

from simulators.evaluate import evaluate
from simulators.patients import cohort

DETERIORATION = ("sepsis", "haemorrhage", "hypertensive_crisis", "bradycardia")


def test_default_cohort_meets_the_targets() -> None:
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
    predictable = ww["predictable"]
    assert predictable["n"] >= 30
    assert predictable["sensitivity"] >= 0.95
    assert predictable["lead_time_median_min"] >= 15.0
    # the predictive glucose low warns earlier than Nightscout's AR2 on the same events
    hypo, ar2 = ww["events"]["hypoglycaemia"], result["detectors"]["ar2"]["events"]["hypoglycaemia"]
    assert hypo["lead_time_median_min"] > ar2["lead_time_median_min"]
