"""Never die, never loop, never go quiet: the processing stage under faults.

Every crash the reliability review found is replayed here through the real processing
stage and alarm store; faults that need a bug are injected by replacing one method
of one object for one bed, the way a bug would behave.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from monitor.alarmstore import AlarmStore
from monitor.clock import SteadyClock
from monitor.config import AlarmSettings
from monitor.deadletters import DeadLetters, without_patient
from monitor.lifecycle import AlarmEngine
from monitor.metrics import Metrics
from monitor.pipeline import Processor
from monitor.ruleset import RuleSet, parse_overrides
from monitor.wire import DEADLETTER_TOPIC, Limits, Rejection, decode
from tests.monitor.test_lifecycle import T0, Ward

OFF = {"device.offline": {"enabled": False}, "hr.stale": {"enabled": False}}


def _hr(bed: str, t: float, v: float) -> tuple[str, bytes, float]:
    body = {"patient": "p-secret", "obs": [{"metric": "hr", "t": t, "v": v, "unit": "/min"}]}
    return (f"wardwatch/v1/obs/4A/{bed}", orjson.dumps(body), t)


def _codes(out: Any) -> list[tuple[str, str, str]]:
    return [(e["bed"], e["code"], e["state"])
            for e in (orjson.loads(p) for t, p, _ in out.alerts)]


def test_disabling_device_offline_while_active_neither_crashes_nor_leaves_it_active(
        tmp_path: Path) -> None:
    w = Ward(tmp_path / "alarms.db")
    assert w.control("status", {"status": "offline"}, at=0) == [(0.0, "device.offline",
                                                                   "firing")]
    w.store.close()  # type: ignore[union-attr]
    # restart with the rule disabled: the review's crash loop (ValueError on unpacking)
    w2 = Ward(tmp_path / "alarms.db", rules=RuleSet({"*": parse_overrides(OFF, "t")}))
    out = w2.p.reconcile(T0 + 5)
    assert _codes(out) == [("1", "device.offline", "resolved")]
    assert "no longer in force" in orjson.loads(out.alerts[0][1])["message"]
    assert w2.obs("hr", [10, 15], [80, 80]) == []  # data from the bed: no crash
    assert w2.engine.groups == {}


def test_data_from_a_bed_whose_offline_rule_is_gone_does_not_raise(tmp_path: Path) -> None:
    w = Ward(tmp_path / "alarms.db")
    w.control("status", {"status": "offline"}, at=0)
    # the rule disappears under an active alarm (the review's ValueError on unpacking)
    w.engine.rules.set_patient("4A", "1", parse_overrides(OFF, "t"))
    assert w.obs("hr", [10], [80]) == []
    assert w.p.metrics.registry.get_sample_value("wardwatch_internal_errors_total",
                                                 {"stage": "alarms"}) == 0
    assert _codes(w.p.reconcile(T0 + 11)) == [("1", "device.offline", "resolved")]


def test_disabling_hr_stale_resolves_its_active_alarm(tmp_path: Path) -> None:
    w = Ward(tmp_path / "alarms.db")
    w.obs("hr", [0], [80])
    assert (300.0, "hr.stale", "firing") in w.tick(300)
    w.store.close()  # type: ignore[union-attr]
    w2 = Ward(tmp_path / "alarms.db", rules=RuleSet({"*": parse_overrides(OFF, "t")}))
    assert _codes(w2.p.reconcile(T0 + 301)) == [("1", "hr.stale", "resolved")]
    assert AlarmStore(tmp_path / "alarms.db").groups() == {}


def test_a_bug_on_one_bed_is_dead_lettered_counted_and_raises_system_internal() -> None:
    registry = CollectorRegistry()
    p = Processor(Metrics(registry), Limits(max_past_s=0), AlarmEngine(), replay=True)
    signals = p.alarms.signals
    real = signals._sample

    def buggy(ward: str, bed: str, *args: Any) -> Any:
        if bed == "7":
            raise KeyError("injected")
        return real(ward, bed, *args)

    signals._sample = buggy  # type: ignore[method-assign]
    batch = [_hr(bed, T0 + 5 * k, 150) for k in range(12) for bed in ("1", "7")]
    out = p.process(batch)
    # bed 1 alarms as usual; bed 7's samples are dead-lettered, once per batch and bed
    assert ("1", "hr.news2.3", "firing") in _codes(out)
    assert all(bed == "1" for bed, _, _ in _codes(out))
    dead = [orjson.loads(b) for t, b, _ in out.dead]  # the first 3 in full, then counted
    assert {(d["reason"], d["topic"]) for d in dead} == {("internal_error",
                                                           "wardwatch/v1/obs/4A/7")}
    assert len(dead) == 3
    assert "KeyError" in dead[0]["detail"] and "p-secret" not in out.dead[0][1]
    assert registry.get_sample_value("wardwatch_internal_errors_total",
                                     {"stage": "alarms"}) == 12
    # history keeps every sample of both beds
    assert sum(1 for r in out.history if r[0] == "v") == 24
    tick = p.tick(T0 + 60)
    assert ("wardwatch", "system.internal", "firing") in _codes(tick)
    summary = [orjson.loads(b) for _, b, _ in p.tick(T0 + 120).dead]
    assert [(s["reason"], s["count"]) for s in summary] == [("internal_error", 9)]
    # quiet for INTERNAL_WINDOW_S: it resolves
    assert ("wardwatch", "system.internal", "resolved") in _codes(p.tick(T0 + 60 + 301))


def test_a_batch_that_raises_is_retried_message_by_message() -> None:
    registry = CollectorRegistry()
    p = Processor(Metrics(registry), Limits(max_past_s=0), AlarmEngine(), replay=True)
    real = p.scorer.score

    def score(sid: Any, metric: Any, t: Any, v: Any, now: float, msg: Any = None) -> Any:
        if (v == 66).any():  # a sample that trips a bug in scoring
            raise FloatingPointError("injected")
        return real(sid, metric, t, v, now, msg)

    p.scorer.score = score  # type: ignore[method-assign]
    batch = [_hr("1", T0 + k, 80) for k in range(5)] + [_hr("2", T0, 66)]
    with pytest.raises(FloatingPointError):
        p.process(batch)
    out = p.fail_batch(batch, FloatingPointError("injected"))
    assert sum(1 for r in out.history if r[0] == "v") == 5  # bed 1: nothing lost
    dead = [orjson.loads(b) for t, b, _ in out.dead]
    assert [(d["reason"], d["topic"]) for d in dead] == [("internal_error",
                                                          "wardwatch/v1/obs/4A/2")]
    assert registry.get_sample_value("wardwatch_internal_errors_total",
                                     {"stage": "process"}) == 2  # the batch, the message


def test_a_command_that_raises_is_dead_lettered_and_the_ward_goes_on() -> None:
    p = Processor(Metrics(CollectorRegistry()), Limits(max_past_s=0), AlarmEngine(),
                  replay=True)

    def broken(*_: Any) -> Any:
        raise RuntimeError("injected")

    p.alarms.device_status = broken  # type: ignore[method-assign]
    out = p.process([("wardwatch/v1/status/4A/3", b'{"status": "offline"}', T0)]
                    + [_hr("1", T0 + 5 * k, 150) for k in range(12)])
    assert [orjson.loads(b)["reason"] for _, b, _ in out.dead] == ["internal_error"]
    assert ("1", "hr.news2.3", "firing") in _codes(out)


# -- staleness -------------------------------------------------------------------
def test_resending_the_last_sample_does_not_keep_hr_stale_quiet() -> None:
    p = Processor(Metrics(CollectorRegistry()), Limits(max_past_s=0), AlarmEngine())
    p.process([_hr("1", T0, 80)])
    fired = []
    for k in range(1, 121):  # the same sample (same t) every second for 2 minutes
        topic, body, _ = _hr("1", T0, 80)
        p.process([(topic, body, T0 + k)])
        fired += _codes(p.tick(T0 + k))
    assert ("1", "hr.stale", "firing") in fired
    # and a new sample clears it
    p.process([_hr("1", T0 + 121, 80)])
    assert ("1", "hr.stale", "resolved") in _codes(p.tick(T0 + 122))


def test_rejected_samples_do_not_refresh_last_seen() -> None:
    p = Processor(Metrics(CollectorRegistry()), Limits(max_past_s=0), AlarmEngine())
    p.process([_hr("1", T0, 80)])
    seen = p.streams.wall_seen[0]
    topic, body, _ = _hr("1", T0 - 50, 80)  # older than the newest: out of order
    p.process([(topic, body, T0 + 40)])
    assert p.streams.wall_seen[0] == seen
    p.process([_hr("1", T0 + 41, 80)])
    assert p.streams.wall_seen[0] == T0 + 41


class FakeTime:
    """An injected pair of clocks: the system wall clock and the monotonic clock."""

    def __init__(self) -> None:
        self.wall, self.mono = T0, 1000.0

    def step(self, s: float) -> None:
        self.wall += s
        self.mono += s


def test_steady_clock_ignores_steps_of_the_system_clock() -> None:
    ft = FakeTime()
    clock = SteadyClock(lambda: ft.wall, lambda: ft.mono)
    ft.step(10)
    assert clock() == T0 + 10
    ft.wall += 3600  # NTP steps the system clock an hour forward
    assert clock() == T0 + 10 and clock.offset() == 3600
    ft.wall -= 7200  # and back past where it was
    ft.step(5)
    assert clock() == T0 + 15 and clock.offset() == -3600


def test_wall_clock_jumps_fire_no_escalation_snooze_end_or_stale_alarm() -> None:
    ft = FakeTime()
    clock = SteadyClock(lambda: ft.wall, lambda: ft.mono)
    engine = AlarmEngine(settings=AlarmSettings(escalate_high_s=120))
    p = Processor(Metrics(CollectorRegistry()), Limits(max_past_s=0), engine)
    out = p.process([_hr("1", T0 + 5 * k - 60, 150) for k in range(13)])
    assert ("1", "hr.news2.3", "firing") in _codes(out)
    p.process([_hr("2", clock(), 80)])
    for jump in (+86_400.0, -86_400.0 * 2):
        ft.wall += jump
        for _ in range(30):  # 30 s of real time with the system clock off by a day
            ft.step(1)
            assert _codes(p.tick(clock())) == [], jump
            p.process([_hr("2", clock(), 80), _hr("1", clock(), 150)])


# -- dead letters ----------------------------------------------------------------
def test_a_flood_of_bad_observations_makes_a_bounded_exact_summary() -> None:
    registry = CollectorRegistry()
    dl = DeadLetters(Metrics(registry), per_key=3, max_full=100, interval_s=60)
    now, total = T0, 0
    for k in range(50):  # 50 payloads x 4,000 bad observations = 200,000
        obs = [{"metric": "hr", "t": now, "v": -5, "unit": "/min"}] * 4000
        topic = f"wardwatch/v1/obs/4A/{k % 4}"
        payload = orjson.dumps({"patient": "p-secret", "obs": obs})
        d = decode(topic, payload, now, Limits())
        for rej in d.rejections:
            dl.add(topic, payload, rej, now + k)
            total += 1
    out = dl.flush(now + 61)
    bodies = [orjson.loads(b) for _, b, _ in out]
    full = [b for b in bodies if not b.get("summary")]
    summary = [b for b in bodies if b.get("summary")]
    assert total == 200_000
    assert len(full) == 4 * 3  # per (reason, topic)
    assert [s["reason"] for s in summary] == ["implausible"]
    assert summary[0]["count"] + len(full) == total
    assert summary[0]["topics"] == 4
    assert all("p-secret" not in b for _, b, _ in out)
    assert registry.get_sample_value("wardwatch_deadletters_total",
                                     {"outcome": "summarised"}) == total - 12


def test_whole_payload_dead_letters_carry_no_patient() -> None:
    dl = DeadLetters(Metrics(CollectorRegistry()))
    for raw in (b'{"patient": "p-secret", "obs": 5}', b'{"patient":"p-se\\"cret" broken',
                b'{"obs": [], "patient": 12345}'):
        dl.add("wardwatch/v1/obs/4A/1", raw, Rejection("bad_envelope", "x"), T0)
    out = dl.drain(T0)
    assert len(out) == 3
    assert not any("secret" in b or "12345" in b for _, b, _ in out)
    assert without_patient(b'{"patient": "x", "obs": []}') == b'{"patient": "<removed>", "obs": []}'


def test_dead_letters_from_the_processor_go_out_once_per_key(tmp_path: Path) -> None:
    p = Processor(Metrics(CollectorRegistry()), Limits(), AlarmEngine())
    bad = [(f"wardwatch/v1/obs/4A/{k}", b"not json", T0) for k in range(500)]
    out = p.process(bad)
    assert len(out.dead) == 100  # max_full per interval
    rest = p.tick(T0 + 61).dead
    assert [orjson.loads(b)["count"] for _, b, _ in rest] == [400]
    assert all(t == DEADLETTER_TOPIC for t, _, _ in out.dead + rest)


# -- input bounds ----------------------------------------------------------------
@pytest.mark.parametrize("t", [-1e13, 0, 946_684_799.9, "0001-01-01T00:00:00Z",
                               "1999-12-31T23:59:59Z"])
def test_timestamps_before_2000_are_refused_even_with_max_past_off(t: object) -> None:
    d = decode("wardwatch/v1/obs/4A/1",
               orjson.dumps({"metric": "hr", "t": t, "v": 80, "unit": "/min"}),
               T0, Limits(max_past_s=0))
    assert [r.reason for r in d.rejections] == ["bad_timestamp"]
