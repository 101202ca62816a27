"""Virtual patients: coupling, cadences, labelled faults, determinism; the evaluation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulators.evaluate import ar2_alarms, evaluate, threshold_alarms, wardwatch_alarms
from simulators.patients import SCENARIOS, THRESHOLDS, cohort, make_patient, parse_mix

REPO = Path(__file__).resolve().parents[2]
T0 = 1_763_856_000.0


def test_vitals_are_coupled_and_reported_at_device_cadences() -> None:
    p = make_patient(3, "haemorrhage", seed=5, start=T0)
    t, sbp = p.truth["sbp"]
    _, dbp = p.truth["dbp"]
    _, mapp = p.truth["map"]
    np.testing.assert_allclose(mapp, dbp + (sbp - dbp) / 3)
    # in shock the heart rate rises as the pressure falls
    (e,) = p.events
    during = (t > e.onset + 1800) & (t < e.onset + 3600)
    before = t < e.onset
    assert sbp[during].mean() < sbp[before].mean() - 20
    assert p.truth["hr"][1][during].mean() > p.truth["hr"][1][before].mean() + 10
    # NIBP every 15 min, numerics every 5 s (minus dropouts, plus duplicates)
    assert np.all(np.diff(p.streams["sbp"][0]) == 900.0)
    hr_t = np.sort(p.streams["hr"][0])
    assert np.median(np.diff(hr_t)) == 5.0
    assert e.onset <= e.crossing <= e.end
    metric, op, thr = THRESHOLDS["haemorrhage"]
    assert (metric, op, thr) == ("sbp", "<=", 90.0)
    i = int(np.searchsorted(t, e.crossing))
    assert sbp[i] <= 90.0 and sbp[i - 1] > 90.0


def test_faults_are_labelled_and_a_cohort_is_reproducible() -> None:
    a = list(cohort(14, seed=9))
    b = list(cohort(14, seed=9))
    assert [p.scenario for p in a] == [p.scenario for p in b]
    np.testing.assert_array_equal(a[5].streams["hr"][1], b[5].streams["hr"][1])
    assert {p.scenario for p in a} == set(SCENARIOS)  # the default mix has every scenario
    kinds = {f.kind for p in a for f in p.artifacts}
    assert {"motion_spike", "dropout", "duplicate", "out_of_order"} <= kinds
    spike = next(f for p in a for f in p.artifacts if f.kind == "motion_spike")
    p = next(p for p in a if p.id == spike.patient)
    t, v = p.streams["hr"]
    assert np.any((t == spike.start) & ((v >= 180) | (v <= 30)))
    assert all(p.streams.get("glucose") is not None for p in a
               if p.scenario in ("hypoglycaemia", "hyperglycaemia"))


def test_parse_mix() -> None:
    assert parse_mix("stable=1,sepsis=3") == {"stable": 0.25, "sepsis": 0.75}
    with pytest.raises(ValueError, match="unknown scenario"):
        parse_mix("flu=1")


def test_wardwatch_filters_what_plain_thresholds_alarm_on() -> None:
    patients = list(cohort(14, seed=21))
    ww = sum(len(wardwatch_alarms(p)) for p in patients)
    plain = sum(len(threshold_alarms(p)) for p in patients)
    assert ww < plain / 3
    hypo = next(p for p in patients if p.scenario == "hypoglycaemia")
    assert ar2_alarms(hypo)  # Nightscout's AR2 sees the fall too


def test_evaluate_reports_every_event_type_and_detector(tmp_path: Path) -> None:
    result = evaluate(cohort(14, seed=21))
    assert result["patients"] == 14 and result["patient_days"] == 14
    for name in ("wardwatch", "thresholds", "ar2", "river"):
        d = result["detectors"][name]
        for kind in SCENARIOS[1:]:
            e = d["events"][kind]
            assert {"sensitivity", "lead_time_median_min", "false_alarms_per_patient_day",
                    "predictable", "lead_time_median_min_predictable"} <= set(e)
            assert len(e["leads_min"]) == len(e["leads_predictable"]) == e["n"]
    # river's SNARIMAX crossing alarms on the glucose events of its family
    river = result["detectors"]["river"]["events"]
    assert any(river[k]["sensitivity"] for k in ("hypoglycaemia", "hyperglycaemia")
               if river[k]["n"])
    ww, plain = result["detectors"]["wardwatch"], result["detectors"]["thresholds"]
    assert ww["false_alarms_per_patient_day"] < plain["false_alarms_per_patient_day"]
    # the CLI writes the same figures
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "evaluate", "--patients", "7",
                           "--seed", "3", "--json", str(out), "--report", str(tmp_path / "r.md")],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["patients"] == 7 and data["seed"] == 3
    report = (tmp_path / "r.md").read_text()
    assert "| wardwatch |" in report and "| river |" in report
    for png in ("r-leads.png", "r-false-alarms.png"):  # plotted, and linked from the report
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in report
    sens = data["detectors"]["wardwatch"]["events"]
    assert all(v["sensitivity"] is None or 0 <= v["sensitivity"] <= 1 for v in sens.values())
    assert not math.isnan(data["detectors"]["wardwatch"]["alarms_per_patient_day"])


def test_simulate_writes_streams_and_labels(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "simulate", "--patients", "3",
                           "--scenario-mix", "sepsis=1", "--seed", "4", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    import csv

    with open(tmp_path / "events.csv") as fh:
        events = list(csv.DictReader(fh))
    assert [e["kind"] for e in events] == ["sepsis"] * 3
    with open(tmp_path / "streams.csv") as fh:
        header = fh.readline().strip().split(",")
        assert header == ["patient", "ward", "bed", "metric", "timestamp", "value"]
        assert sum(1 for _ in fh) > 3 * 15_000
    assert (tmp_path / "artifacts.csv").read_text().startswith("patient,kind,metric")


def test_an_event_is_visible_once_the_devices_show_it_and_predictable_if_early() -> None:
    from simulators.patients import NIBP_S, PREDICTABLE_MIN

    slow = make_patient(1, "sepsis", seed=5, start=T0)
    (e,) = slow.events
    # sepsis takes hours: the first NIBP reading that shows > 2 sd of natural variation
    # comes long before SBP reaches 90
    assert e.onset <= e.visible < e.crossing
    assert (e.visible - T0) % NIBP_S == 0  # a cuff reading's time
    assert e.warning_min >= PREDICTABLE_MIN and e.predictable
    fast = make_patient(2, "haemorrhage", seed=5, start=T0).events[0]
    assert fast.visible - fast.onset < e.visible - e.onset  # a haemorrhage shows sooner
    # a CGM shows a hypo 10 min late, and most fall too fast to be predicted 15 min ahead
    hypos = [make_patient(i, "hypoglycaemia", seed=5, start=T0).events[0] for i in range(8)]
    assert all(h.visible - h.onset >= 600 for h in hypos)
    assert sum(h.predictable for h in hypos) < len(hypos)
