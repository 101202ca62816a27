"""``wardwatch evaluate --cgm``: the definitions, the baselines, and a small real-data check.

The real recordings in ``tests/data/cgm`` are six of the HUPA-UCM test set (see its
README); nothing was tuned on them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.cli import main
from simulators.cgm import (
    BASELINES,
    DEFAULT_WINDOW_MIN,
    ar2,
    episodes,
    evaluate_recordings,
    events,
    load,
    recording,
    subsample,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "cgm"
T0 = 1_700_000_000.0


def rec(values: list[float], step: float = 300.0, gaps: dict[int, float] | None = None) -> Any:
    t = T0 + step * np.arange(len(values), dtype=float)
    for i, extra in (gaps or {}).items():
        t[i:] += extra
    return recording("r", t, np.array(values, dtype=float))


def test_an_event_is_two_consecutive_readings_below_70() -> None:
    r = rec([100, 69, 68, 75, 69, 80, 60, 50, 52, 71, 69, 90, 65, 66])
    evs = events(r)
    assert [(int((e.onset - T0) / 300), int((e.end - T0) / 300), e.level2) for e in evs] == [
        (1, 2, False), (6, 8, True), (12, 13, False)]
    # two readings below 70 with a long gap between them are not consecutive
    gapped = rec([100, 65, 66, 90], gaps={2: 3600.0})
    assert events(gapped) == []


def test_readings_are_sorted_deduplicated_and_subsampled() -> None:
    t = T0 + np.array([600.0, 0.0, 300.0, 300.0, 900.0, 1200.0, 1500.0, 1800.0])
    v = np.array([3.0, 1.0, 2.0, 99.0, 4.0, 5.0, 6.0, np.nan])
    r = recording("r", t, v)
    assert r.v.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # first of a duplicate kept
    assert r.cadence_s == 300.0
    _, vs = subsample(r.t, r.v, 900.0)
    assert vs.tolist() == [1.0, 4.0]
    assert recording("r", t, v, 900.0).cadence_s == 900.0


def test_ar2_is_nightscout_s_forecast() -> None:
    # flat at its reference 140 mg/dL: the log-AR forecast stays there, no alarm
    assert ar2(rec([140.0] * 10)) == []
    # falling 4 mg/dL per 5 min from 110: x = ln(BG/140), x' = 1.716 x - 0.723 x_prev
    values = [110.0 - 4 * i for i in range(8)]
    r = rec(values)
    fired = ar2(r)
    assert len(fired) == 1
    k = int((fired[0] - T0) / 300)
    prev, curr = math.log(values[k - 1] / 140), math.log(values[k] / 140)
    for _ in range(4):
        prev, curr = curr, 1.716 * curr - 0.723 * prev
    assert 140 * math.exp(curr) < 80.0  # its 20-min point is below 80 ...
    prev, curr = math.log(values[k - 2] / 140), math.log(values[k - 1] / 140)
    for _ in range(4):
        prev, curr = curr, 1.716 * curr - 0.723 * prev
    assert 140 * math.exp(curr) >= 80.0  # ... and was not one reading earlier


def test_firings_within_30_min_are_one_episode() -> None:
    assert episodes([0.0, 600.0, 2400.0, 6000.0, 7700.0, 9600.0]) == [
        [0.0, 600.0, 2400.0], [6000.0, 7700.0], [9600.0]]


def _frontier(curve: list[dict[str, Any]], fa: float) -> float:
    """wardwatch's sens15 at ``fa`` false alarms per patient-day, along its curve."""
    pts = sorted((p["false_alarms_per_patient_day"], p["sens15"]) for p in curve)
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    return float(np.interp(fa, xs, ys))


@pytest.mark.parametrize("cadence_min", [5, 15])
def test_real_recordings_against_the_baselines(cadence_min: int) -> None:
    recs = load(DATA, None if cadence_min == 5 else 60.0 * cadence_min)
    assert len(recs) == 6
    res = evaluate_recordings(recs)
    det = res["detectors"]
    assert set(det) == {"wardwatch", *BASELINES}
    ww = det["wardwatch"]
    assert ww["events"] >= 50  # enough real hypoglycaemia to mean something
    assert all(d["events"] == ww["events"] for d in det.values())
    assert ww["sensitivity"] >= 0.9
    assert ww["sens15"] >= 0.75
    assert ww["lead_median_min"] >= 20.0
    assert ww["precision"] >= 0.5
    # the reactive alarm warns nobody 15 min ahead; wardwatch does, most of the time
    assert ww["sens15"] > det["below70"]["sens15"] + 0.5
    # wardwatch's trade-off curve is not far below any predictive baseline: at a
    # baseline's false-alarm rate it warns nearly as many events 15 min ahead. (Nightscout's
    # AR2 sits on the curve on the tuning set and up to 0.07 above it on these six: the
    # README's real-data section says so.)
    for name in ("below80", "ar2", "ar2_gated", "linear30"):
        b = det[name]
        assert _frontier(res["curve"], b["false_alarms_per_patient_day"]) >= \
            b["sens15"] - 0.1, name
    windows = [p["window_min"] for p in res["curve"]]
    assert DEFAULT_WINDOW_MIN in windows and windows == sorted(windows)


def test_evaluate_cgm_cli_writes_the_report(tmp_path: Path) -> None:
    js, md = tmp_path / "cgm.json", tmp_path / "cgm.md"
    assert main(["evaluate", "--cgm", str(DATA), "--cadence", "15m", "--ack-after", "60",
                 "--json", str(js), "--report", str(md)]) == 0
    result = json.loads(js.read_text())
    assert result["recordings"] == 6 and result["ack_after_s"] == 60.0
    assert result["cadence_min"] == 15.0
    text = md.read_text()
    assert "| wardwatch |" in text and "| ar2_gated |" in text
    for png in ("cgm-tradeoff.png", "cgm-leads.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    assert main(["evaluate", "--cgm", str(tmp_path / "absent")]) == 2
    with pytest.raises(SystemExit):  # argparse: "not a duration"
        main(["evaluate", "--cgm", str(DATA), "--cadence", "soon"])
