"""The processing stage without services: artifacts stay out of what beds are judged on."""

from __future__ import annotations

import threading

import orjson
from prometheus_client import CollectorRegistry

from monitor.metrics import Metrics
from monitor.pipeline import Processor
from monitor.scoring.multivariate import Background
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


T0 = 1.8e9


def _hr(*ts: float) -> tuple[str, bytes, float]:
    obs = [{"metric": "hr", "t": T0 + t, "v": 70.0 + (t % 7), "unit": "/min"} for t in ts]
    return "wardwatch/v1/obs/4A/1", orjson.dumps({"obs": obs}), T0 + max(ts) + 1.0


def test_how_messages_are_cut_into_batches_does_not_change_the_outcome() -> None:
    """A sample older than one of an earlier message is old, whether the two share a
    micro-batch or not (a replay after a takeover cuts batches elsewhere); within one
    message, samples in any order are all taken, in time order."""
    messages = [_hr(0.0), _hr(5.0), _hr(10.0, 20.0), _hr(15.0), _hr(30.0, 25.0),
                _hr(25.0), _hr(40.0)]
    one_by_one = Processor(Metrics(CollectorRegistry()))
    for m in messages:
        one_by_one.process([m])
    together = Processor(Metrics(CollectorRegistry()))
    together.process(messages)
    sid = one_by_one.streams.index("4A", "1", METRIC_IDS["hr"])
    assert together.streams.row_state(sid) == one_by_one.streams.row_state(sid)
    for p in (one_by_one, together):  # 15 after 20, and the repeated 25: old
        assert p._obs["out_of_order"]._value.get() == 2
        assert p._obs["accepted"]._value.get() == 7


class _PlainBeds(Processor):
    """The per-bed detector's schedule as it was before it was vectorised: every bed with
    a new accepted cardiovascular sample asks the detector whether it is due."""

    def _score_beds(self, batch, out):  # type: ignore[no-untyped-def]
        import math

        import numpy as np

        from monitor.pipeline import _CARDIO, _NAMES, _NOT_ACCEPTED

        ok = np.isin(batch.metric, _CARDIO) & ~batch.has(_NOT_ACCEPTED)
        newest: dict[tuple[str, str], float] = {}
        for s, ts in zip(batch.sid[ok].tolist(), batch.t[ok].tolist(), strict=True):
            ward, bed, _ = self.streams.keys[s]
            newest[(ward, bed)] = max(ts, newest.get((ward, bed), -math.inf))
        for (ward, bed), ts in newest.items():
            if ts - self.beds.last_t(ward, bed) < self.beds.every_s:  # not due
                continue
            values = {}
            for mid in _CARDIO:
                row = self.streams.find(ward, bed, mid)
                values[_NAMES[mid]] = math.nan if row is None else float(self.streams.value[row])
            score = self.beds.score(ward, bed, ts, values)
            if score is not None:
                self.bed_scores[(ward, bed)] = (ts, score)
                out.history.append(["b", ward, bed, ts, round(score, 4)])


def test_bed_detector_schedule_matches_asking_every_bed_every_batch() -> None:
    """Beds whose vitals arrive at different cadences, one that gains its blood pressure
    late, one that never has it, and artifacts: the same bed scores, at the same times."""
    import numpy as np

    rng = np.random.default_rng(5)
    units = {"hr": "/min", "sbp": "mm[Hg]", "dbp": "mm[Hg]", "map": "mm[Hg]"}
    messages = []
    for k in range(3000):
        t = T0 + 2.0 * k
        for bed in range(6):
            if rng.random() < 0.3:
                continue
            vit = {"hr": 70 + rng.normal(0, 3)}
            if bed != 5 and (bed != 4 or k > 900) and k % (1 + bed) == 0:
                vit |= {"sbp": 120 + rng.normal(0, 5), "dbp": 75.0, "map": 90.0}
            if rng.random() < 0.01:
                vit["hr"] = 250.0  # a motion artifact
            obs = [{"metric": m, "t": t, "v": float(v), "unit": units[m]} for m, v in vit.items()]
            messages.append((f"wardwatch/v1/obs/4A/{bed}", orjson.dumps({"obs": obs}), t))
    new, old = Processor(Metrics(CollectorRegistry())), _PlainBeds(Metrics(CollectorRegistry()))
    got: list[list[object]] = []
    want: list[list[object]] = []
    at = 0
    while at < len(messages):
        n = int(rng.integers(1, 40))
        got += [r for r in new.process(messages[at:at + n]).history if r[0] == "b"]
        want += [r for r in old.process(messages[at:at + n]).history if r[0] == "b"]
        at += n
    assert len(want) > 100
    assert {r[2] for r in want} == {"0", "1", "2", "3", "4"}
    assert got == want


def test_each_history_row_names_its_sample_and_has_null_for_what_was_not_scored() -> None:
    p = Processor(Metrics(CollectorRegistry()))

    def rows(messages: list[tuple[str, bytes, float]]) -> list[list[object]]:
        # as the journal keeps them: JSON arrays, NaN nowhere (orjson would write null)
        out = p.process(messages).history
        assert not [x for r in out for x in r if isinstance(x, float) and x != x]
        return [r for r in orjson.loads(orjson.dumps(out)) if r[0] == "v"]

    sbp = [msg(T0 + 5 * k, sbp=120 + k % 4) for k in range(60)]  # one metric a message
    rows(sbp[:59])
    two = ("wardwatch/v1/obs/4B/7", orjson.dumps({"obs": [  # two metrics in one message
        {"metric": "sbp", "t": T0, "v": 120, "unit": "mm[Hg]"},
        {"metric": "hr", "t": T0, "v": 81, "unit": "/min"}]}), T0)
    got = rows([sbp[59], two])
    assert [r[:6] for r in got] == [["v", "4A", "3", "sbp", T0 + 295, 123.0],
                                    ["v", "4B", "7", "sbp", T0, 120.0],
                                    ["v", "4B", "7", "hr", T0, 81.0]]
    warm, first, _ = got
    assert isinstance(warm[6], float)  # scored
    assert first[6:] == [None, None]  # a stream's first sample: nothing to score it against
    old = rows([msg(T0, sbp=99)])  # older than the stream's newest: kept, not scored
    assert old == [["v", "4A", "3", "sbp", T0, 99.0, None, None]]


def test_bed_vectors_that_wait_for_river_come_out_with_the_next_tick(
        gated_import: tuple[Background, threading.Event]) -> None:
    """While river is imported beside the watching, the bed detector's turns wait; the
    clock's next tick scores them (no new sample needed), the rows a plain processor
    would have written."""
    background, gate = gated_import
    messages = [msg(T0 + 60 * k, hr=75 + k % 3, sbp=120, dbp=75, map=90) for k in range(5)]
    plain = Processor(Metrics(CollectorRegistry()))
    want = [r for m in messages for r in plain.process([m]).history if r[0] == "b"]
    assert len(want) == 5
    p = Processor(Metrics(CollectorRegistry()), river=background)
    assert not [r for m in messages for r in p.process([m]).history if r[0] == "b"]
    assert not [r for r in p.tick(T0 + 300).history if r[0] == "b"]  # still loading
    gate.set()
    background.join()
    assert [r for r in p.tick(T0 + 301).history if r[0] == "b"] == want
    assert p.bed_scores == plain.bed_scores
    assert not [r for r in p.tick(T0 + 302).history if r[0] == "b"]
