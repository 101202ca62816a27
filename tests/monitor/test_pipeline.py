"""The processing stage without services: artifacts stay out of what beds are judged on."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry

from monitor.metrics import Metrics
from monitor.pipeline import Processor
from monitor.vitals import HR, METRIC_IDS

T0 = 1_763_856_000.0
TOPIC = "wardwatch/v1/obs/4A/3"


def msg(t: float, **values: float) -> tuple[str, bytes, float]:
    units = {"hr": "/min", "sbp": "mm[Hg]", "dbp": "mm[Hg]", "map": "mm[Hg]"}
    obs = [{"metric": m, "t": t, "v": v, "unit": units[m]} for m, v in values.items()]
    return TOPIC, orjson.dumps({"obs": obs}), t


def test_motion_artifact_reaches_neither_the_bed_value_nor_the_bed_detector() -> None:
    p = Processor(Metrics(CollectorRegistry()))
    p.process([msg(T0, hr=75, sbp=120, dbp=75, map=90)])
    p.process([msg(T0 + 5 * k, hr=74 + k % 3) for k in range(1, 30)])
    hr_row = p.streams.find("4A", "3", HR)
    assert hr_row is not None
    before = p.bed_scores[("4A", "3")]
    # a single 250 /min motion spike, a minute later: due for the bed detector by time
    out = p.process([msg(T0 + 5 * 30 + 60, hr=250)])
    assert p.streams.value[hr_row] < 80
    assert not [r for r in out.history if r[0] == "b"]
    assert p.bed_scores[("4A", "3")] == before
    # the next plausible sample is judged, with plausible values
    out = p.process([msg(T0 + 5 * 30 + 65, hr=76)])
    assert [r[:3] for r in out.history if r[0] == "b"] == [["b", "4A", "3"]]
    assert p.streams.find("4A", "3", METRIC_IDS["sbp"]) is not None
