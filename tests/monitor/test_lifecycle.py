"""The alarm lifecycle, replayed in observation time through the real processing stage.

Messages are stamped with their observation time as receipt time, so the engine's
clock is observation time and hours replay in milliseconds. Every test asserts the
exact event sequence.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from monitor.alarmstore import AlarmStore
from monitor.config import AlarmSettings
from monitor.lifecycle import SYSTEM_WARD, AlarmEngine
from monitor.metrics import Metrics
from monitor.pipeline import Processor
from monitor.ruleset import RuleSet, parse_overrides
from monitor.wire import Limits

T0 = 1_763_856_000.0
UNITS = {"hr": "/min", "sbp": "mm[Hg]", "dbp": "mm[Hg]", "map": "mm[Hg]", "glucose": "mg/dL"}
Event = tuple[float, str, str]  # (t - T0, code, state)


class Ward:
    """A processing stage with its alarm engine, driven in observation time."""

    def __init__(self, store: Path | None = None, settings: AlarmSettings | None = None,
                 rules: RuleSet | None = None, trusted_clients: tuple[str, ...] = ()) -> None:
        self.store = AlarmStore(store) if store is not None else None
        engine = AlarmEngine(rules, settings, store=self.store)
        self.p = Processor(Metrics(CollectorRegistry()), Limits(max_past_s=0), engine,
                           replay=True, trusted_clients=trusted_clients)
        self.engine = engine
        self.raw: list[dict[str, Any]] = []

    def _events(self, mqtt: list[Any]) -> list[Event]:
        out = []
        for topic, payload, _ in mqtt:
            if topic.startswith("wardwatch/v1/alerts/"):
                ev = orjson.loads(payload)
                self.raw.append(ev)
                out.append((round(ev["t"] - T0, 1), ev["code"], ev["state"]))
        return out

    def obs(self, metric: str, ts: Any, vs: Any, bed: str = "1") -> list[Event]:
        msgs = [(f"wardwatch/v1/obs/4A/{bed}",
                 orjson.dumps({"obs": [{"metric": metric, "t": T0 + float(t), "v": float(v),
                                        "unit": UNITS[metric]}]}), T0 + float(t))
                for t, v in zip(ts, vs, strict=True)]
        events = []
        for i in range(0, len(msgs), 50):  # micro-batches, as live
            events += self._events(self.p.process(msgs[i:i + 50]).alerts)
        return events

    def control(self, kind: str, body: Any, at: float, bed: str = "1") -> list[Event]:
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        out = self.p.process([(f"wardwatch/v1/{kind}/4A/{bed}", payload, T0 + at)])
        self.dead = [orjson.loads(p) for _, p, _ in out.dead]
        return self._events(out.alerts)

    def tick(self, at: float, **system: float) -> list[Event]:
        return self._events(self.p.tick(T0 + at, system or None).alerts)

    def alarm_id(self, code: str) -> str:
        return next(ev["id"] for ev in reversed(self.raw) if ev["code"] == code)


# NEWS2 subscore-1 alarms are off by default; tests of band edges turn them on
SUBSCORE_1_ON = RuleSet({"*": parse_overrides(
    {"hr.news2.1": {"enabled": True}, "sbp.news2.1": {"enabled": True}}, "test")})


def steady(seconds: float, level: float, every: float = 5.0, start: float = 0.0,
           noise: float = 1.0, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    ts = start + np.arange(0.0, seconds, every)
    return ts, np.round(level + rng.normal(0, noise, ts.size))


def test_a_single_250_spike_fires_nothing() -> None:
    w = Ward()
    ts, vs = steady(1800, 78)
    vs[200] = 250
    assert w.obs("hr", ts, vs) == []


def test_hr_135_for_two_minutes_fires_after_its_delay_and_latches() -> None:
    w = Ward()
    ts, vs = steady(600, 78)
    assert w.obs("hr", ts, vs) == []
    # 135 for 2 min from t=600: the Hampel filter believes the step at its 8th sample
    # (t=635), then hr.news2.3 must hold 30 s: it fires at t=665
    assert w.obs("hr", *steady(120, 135, start=600, seed=1)) == [(665.0, "hr.news2.3", "firing")]
    # back to normal: a high alarm nobody acknowledged stays (latched), and escalates
    # 120 s after it fired
    assert w.obs("hr", *steady(300, 78, start=720, seed=2)) == [
        (785.0, "hr.news2.3", "escalated")]
    (a, gs), = w.engine.active()
    assert gs.latched and a.state == "escalated"
    assert w.control("ack", {"id": a.id, "by": "nurse.kim", "action": "ack"}, at=1030) == [
        (1030.0, "hr.news2.3", "acknowledged"), (1030.0, "hr.news2.3", "resolved")]
    assert w.engine.active() == []


def test_a_value_hovering_on_a_limit_does_not_flap() -> None:
    w = Ward(rules=SUBSCORE_1_ON)
    # an hour of HR hovering at the 90/91 edge of NEWS2 pulse subscore 1
    ts = np.arange(0.0, 3600.0, 5.0)
    vs = np.where(np.arange(ts.size) % 2 == 0, 89.0, 92.0)
    vs[::7] = 90.0
    events = w.obs("hr", ts, vs)
    assert events == [(305.0, "hr.news2.1", "firing")]  # once, 5 min after the first 92
    events = w.obs("hr", *steady(600, 80, start=3600))
    assert events == [(3600.0, "hr.news2.1", "resolved")]  # 80 < 91 - 3: clearly gone


def test_glucose_falling_2_per_min_fires_the_predictive_low_before_70() -> None:
    w = Ward()
    ts = np.arange(0.0, 6 * 3600.0, 300.0)
    vs = 130.0 + np.random.default_rng(4).normal(0, 2, ts.size)
    assert w.obs("glucose", ts, np.round(vs)) == []
    start = ts[-1] + 300
    fall_t = start + np.arange(0.0, 3600.0, 300.0)
    fall_v = 130.0 - 2.0 * (fall_t - start) / 60.0
    events = w.obs("glucose", fall_t, fall_v)
    reaches_70 = start + 30 * 60
    codes = [(code, state) for _, code, state in events]
    assert codes[0] == ("glucose.low.predicted", "firing")
    predicted_at = events[0][0]
    assert predicted_at <= reaches_70 - 10 * 60  # at least 10 min of warning
    # once the value is low the level alarm takes over and the prediction resolves
    assert ("glucose.low.l1", "firing") in codes
    assert codes.index(("glucose.low.predicted", "resolved")) > codes.index(
        ("glucose.low.l1", "firing")) - 1
    low = next(t for t, code, s in events if code == "glucose.low.l1")
    assert low >= reaches_70


def test_snooze_silences_then_sounds_again_while_the_condition_lasts() -> None:
    w = Ward(settings=AlarmSettings(escalate_medium_s=0))
    w.obs("hr", *steady(300, 78))
    assert w.obs("hr", *steady(300, 120, start=300)) == [(395.0, "hr.news2.2", "firing")]
    aid = w.alarm_id("hr.news2.2")
    assert w.control("ack", {"id": aid, "by": "nurse.kim", "action": "snooze",
                             "snooze_s": 600, "reason": "rounding"}, at=600) == [
        (600.0, "hr.news2.2", "acknowledged")]
    # still tachycardic: silent during the snooze, sounds again when it ends
    assert w.obs("hr", *steady(595, 120, start=600, seed=3)) == []
    assert w.tick(1199) == []
    assert w.tick(1200) == [(1200.0, "hr.news2.2", "firing")]
    assert w.raw[-1]["id"] == aid and "sounding again" in w.raw[-1]["message"]
    # snoozed again (the default 10 min), and the condition clears during the snooze:
    # resolved, and nothing sounds when the snooze would have ended
    assert w.control("ack", {"id": aid, "by": "nurse.kim", "action": "snooze"}, at=1210) == [
        (1210.0, "hr.news2.2", "acknowledged")]
    assert w.obs("hr", *steady(700, 78, start=1210, seed=5)) == [
        (1235.0, "hr.news2.2", "resolved")]
    assert w.tick(1210 + 600) == []
    assert w.engine.active() == []


def test_a_snoozed_low_alarm_never_holds_back_a_higher_one() -> None:
    w = Ward(rules=SUBSCORE_1_ON)
    w.obs("hr", *steady(300, 78))
    assert w.obs("hr", *steady(600, 100, start=300)) == [(635.0, "hr.news2.1", "firing")]
    w.control("ack", {"id": w.alarm_id("hr.news2.1"), "by": "kim", "action": "snooze",
                      "snooze_s": 3600}, at=900)
    events = w.obs("hr", *steady(120, 140, start=900, seed=1))
    assert events == [(965.0, "hr.news2.1", "resolved"), (965.0, "hr.news2.3", "firing")]
    assert w.raw[-2]["message"].endswith("superseded by hr.news2.3 (Heart rate 140 /min)")


def test_escalation_when_nobody_acknowledges() -> None:
    w = Ward(settings=AlarmSettings(escalate_high_s=120))
    w.obs("sbp", [0.0, 900.0], [120.0, 120.0])
    assert w.obs("sbp", [1800.0], [85.0]) == [(1800.0, "sbp.news2.3", "firing")]  # no delay
    assert w.tick(1919) == []
    assert w.tick(1920) == [(1920.0, "sbp.news2.3", "escalated")]
    assert "escalated to charge nurse" in w.raw[-1]["message"]
    assert w.tick(2500) == []  # once
    w.control("ack", {"id": w.alarm_id("sbp.news2.3"), "by": "charge.lee", "action": "ack"},
              at=2500)
    assert w.raw[-1]["state"] == "acknowledged"


def test_news2_aggregate_map_and_shock_index() -> None:
    w = Ward()
    w.obs("hr", *steady(300, 78))
    # SBP 95 (subscore 2) fires when a reading 10 min later confirms it; MAP 60 at once
    assert w.obs("sbp", [-300.0], [95.0]) == []
    events = w.obs("sbp", [300.0], [95.0]) + w.obs("map", [300.0], [60.0])
    assert events == [(300.0, "sbp.news2.2", "firing"), (300.0, "map.low", "firing")]
    # HR 135 (subscore 3): pulse alarm, then the aggregate 5 after its 60 s, and the shock
    # index 135/95 = 1.42 after its 60 s
    events = w.obs("hr", *steady(180, 135, start=305, seed=1))
    assert events == [
        (365.0, "hr.news2.3", "firing"),  # believed at 335, then 30 s
        (395.0, "news2.urgent", "firing"),  # 3 + 2 since 335, then 60 s
        (395.0, "shock_index.high", "firing"),
    ]
    news2 = next(ev for ev in w.raw if ev["code"] == "news2.urgent")
    assert news2["value"] == 5 and news2["metric"] == "news2"
    for absent in ("respiration rate", "SpO2", "temperature", "consciousness"):
        assert absent in news2["message"]


def test_technical_alarms_flatline_stale_device_and_self_check() -> None:
    w = Ward(rules=RuleSet({"*": parse_overrides({"hr.stale": {"threshold": 30.0}}, "t")}))
    # a stuck sensor: the same value for over 5 minutes
    events = w.obs("hr", np.arange(0.0, 400.0, 5.0), np.full(80, 77.0))
    assert events == [(300.0, "hr.flatline", "firing")]
    assert w.obs("hr", [400.0, 405.0], [79.0, 81.0]) == [(400.0, "hr.flatline", "resolved")]
    # stale on the clock: no HR for over 30 s (the threshold overridden for this test)
    assert w.tick(435) == []
    assert w.tick(436) == [(436.0, "hr.stale", "firing")]
    assert w.obs("hr", [440.0], [80.0]) == []
    assert w.tick(441) == [(441.0, "hr.stale", "resolved")]
    # the device's last will, then it comes back
    assert w.control("status", b"offline", at=450) == [(450.0, "device.offline", "firing")]
    assert w.control("status", {"status": "online"}, at=460) == [
        (460.0, "device.offline", "resolved")]
    # the pipeline's own health: history spooled for longer than 30 s
    assert w.tick(470, history=120.0, mqtt=0.0, ingest=0.1) == []
    assert w.tick(500, history=800.0, mqtt=0.0, ingest=0.1) == [
        (500.0, "hr.stale", "firing"), (500.0, "system.history", "firing")]
    assert w.raw[-1]["ward"] == SYSTEM_WARD
    assert w.tick(510, history=0.0, mqtt=0.0, ingest=0.1) == [(510.0, "system.history", "resolved")]


def test_admission_overrides_and_discharge() -> None:
    w = Ward(rules=SUBSCORE_1_ON)  # the ward wants subscore-1 alarms
    w.obs("hr", *steady(300, 78))
    # an athlete's admission: HR subscore-1 alarms off for this patient
    assert w.control("admit", {"patient": "p-9", "rules": {
        "hr.news2.1": {"enabled": False}, "hr.drift": {"enabled": False},
        "hr.news2.3": {"delay_s": 0}}}, at=300) == []
    assert w.obs("hr", *steady(900, 100, start=300)) == []
    events = w.obs("hr", *steady(60, 140, start=1200, seed=1))
    assert events == [(1235.0, "hr.news2.3", "firing")]  # no delay for this patient
    # another bed keeps the ward's rules
    w.obs("hr", *steady(300, 78), bed="2")
    assert w.obs("hr", *steady(600, 100, start=300), bed="2") == [(635.0, "hr.news2.1", "firing")]
    # a bad admission is refused as a whole and dead-lettered
    assert w.control("admit", {"rules": {"hr.nosuch": {}}}, at=1300) == []
    assert w.dead[0]["reason"] == "bad_command" and "hr.nosuch" in w.dead[0]["detail"]
    # discharge resolves the bed's alarms (even latched ones) and its streams are not expected
    assert w.control("admit", {"action": "discharge"}, at=1400) == [
        (1400.0, "hr.news2.3", "resolved")]
    assert w.tick(5000) == [(5000.0, "hr.stale", "firing")]  # bed 2 only
    assert w.raw[-1]["bed"] == "2"


def test_acks_are_validated_audited_and_refusals_dead_lettered(tmp_path: Path) -> None:
    w = Ward(store=tmp_path / "alarms.db")
    w.obs("sbp", [0.0], [85.0])
    aid = w.alarm_id("sbp.news2.3")
    assert w.control("ack", {"id": "nope", "by": "kim", "action": "ack"}, at=10) == []
    assert w.dead[0]["reason"] == "unknown_alarm"
    assert w.control("ack", {"id": aid, "by": "kim", "action": "dismiss"}, at=11) == []
    assert w.dead[0]["reason"] == "bad_command"
    assert w.control("ack", {"id": aid, "by": "kim", "action": "ack"}, at=12, bed="2") == []
    assert w.dead[0]["reason"] == "unknown_alarm"  # an alarm of another bed
    assert w.control("ack", {"id": aid, "by": "kim", "action": "ack", "reason": "seen"},
                     at=20) == [(20.0, "sbp.news2.3", "acknowledged")]
    assert w.store is not None
    log = w.store.audit_log(alarm_id=aid)
    assert [(e["action"], e["by"]) for e in reversed(log)] == [
        ("firing", "wardwatch"), ("rejected", "kim"), ("acknowledged", "kim")]
    acked = log[0]
    assert acked["clock"] == T0 + 20 and "seen" in acked["detail"]


def test_acks_record_the_broker_user_and_only_trusted_ones_count(tmp_path: Path) -> None:
    w = Ward(store=tmp_path / "alarms.db", trusted_clients=("station-4A",))
    w.obs("sbp", [0.0], [85.0])
    aid = w.alarm_id("sbp.news2.3")
    ack = {"id": aid, "by": "dr.nobody", "action": "ack"}
    assert w.control("ack", ack, at=10) == []  # the plain topic names no broker user
    assert w.dead[0]["reason"] == "untrusted_client"
    assert w.control("ack", ack, at=11, bed="1/pager-gw") == []
    assert w.dead[0]["reason"] == "untrusted_client" and "pager-gw" in w.dead[0]["detail"]
    assert w.control("ack", {**ack, "by": "kim"}, at=12, bed="1/station-4A") == [
        (12.0, "sbp.news2.3", "acknowledged")]
    assert w.control("ack", ack, at=13, bed="1/x/y") == []
    assert w.dead[0]["reason"] == "bad_topic"
    assert w.store is not None
    log = [(e["action"], e["by"], e["client"]) for e in reversed(w.store.audit_log())]
    assert log == [("firing", "wardwatch", ""), ("rejected", "dr.nobody", "mqtt"),
                   ("rejected", "dr.nobody", "mqtt:pager-gw"),
                   ("acknowledged", "kim", "mqtt:station-4A")]


def test_an_audit_log_from_before_senders_were_recorded_opens(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "alarms.db")
    db.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, clock REAL NOT NULL,"
               " ward TEXT NOT NULL, bed TEXT NOT NULL, alarm_id TEXT NOT NULL,"
               " code TEXT NOT NULL, priority TEXT NOT NULL, action TEXT NOT NULL,"
               " by TEXT NOT NULL, detail TEXT NOT NULL)")
    db.execute("INSERT INTO audit VALUES (1, 5.0, '4A', '1', 'a1', 'hr.news2.3', 'high',"
               " 'acknowledged', 'kim', '')")
    db.commit()
    db.close()
    store = AlarmStore(tmp_path / "alarms.db")
    assert [(e["by"], e["client"]) for e in store.audit_log()] == [("kim", "")]


def test_a_restart_in_the_middle_keeps_the_state(tmp_path: Path) -> None:
    db = tmp_path / "alarms.db"
    w = Ward(store=db)
    w.obs("hr", *steady(300, 78))
    w.obs("sbp", [0.0], [150.0])
    assert w.obs("hr", *steady(120, 140, start=300, seed=1)) == [(365.0, "hr.news2.3", "firing")]
    assert w.obs("sbp", [400.0], [85.0]) == [(400.0, "sbp.news2.3", "firing")]
    w.control("ack", {"id": w.alarm_id("hr.news2.3"), "by": "kim", "action": "ack"}, at=410)
    assert w.store is not None
    w.store.close()
    # a new process: fresh scoring state, the alarm state from SQLite
    w2 = Ward(store=db)
    assert {(a.code, a.state) for a, _ in w2.engine.active()} == {
        ("hr.news2.3", "acknowledged"), ("sbp.news2.3", "firing")}
    # the acknowledged alarm does not fire again; the other is still the same alarm
    assert w2.obs("hr", *steady(120, 140, start=420, seed=2)) == []
    # its escalation timer survived too
    assert w2.obs("sbp", [1300.0], [84.0]) == [(1300.0, "sbp.news2.3", "escalated")]
    ids = {a.code: a.id for a, _ in w2.engine.active()}
    assert ids["sbp.news2.3"] == w.alarm_id("sbp.news2.3")
    # and it resolves as usual: back to normal (latched: it is high), then acknowledged
    assert w2.obs("sbp", [2200.0], [125.0]) == []
    assert w2.control("ack", {"id": ids["sbp.news2.3"], "by": "kim", "action": "ack"},
                      at=2210) == [(2210.0, "sbp.news2.3", "acknowledged"),
                                   (2210.0, "sbp.news2.3", "resolved")]


def test_rule_overrides_must_nest() -> None:
    from monitor.errors import ConfigError

    with pytest.raises(ConfigError, match="more severe"):
        RuleSet({"4A": parse_overrides({"hr.news2.2": {"threshold": 140.0}}, "t")}).for_bed(
            "4A", "1")
    rs = RuleSet({"4A": parse_overrides({"hr.news2.2": {"priority": "high"}}, "t")})
    lv = rs.for_bed("4A", "1").by_name["hr.high"].levels[0]
    assert lv.code == "hr.news2.2"  # hr.news2.1 is off by default
    assert replace(lv, priority="medium") == rs.for_bed("4B", "1").by_name["hr.high"].levels[0]
    on = RuleSet({"4A": parse_overrides({"hr.news2.1": {"enabled": True}}, "t")})
    assert on.for_bed("4A", "1").by_name["hr.high"].levels[0].code == "hr.news2.1"


def test_alarm_burden_per_bed_and_rule_from_the_store_and_the_cli(tmp_path: Path) -> None:
    # (the steep falls would also predict SBP <= 90: not what this test is about)
    quiet = RuleSet({"*": parse_overrides({"sbp.low.predicted": {"enabled": False}}, "test")})
    w = Ward(store=tmp_path / "alarms.db", rules=quiet)
    for k in range(3):  # three SBP episodes on bed 1 (a reading, its re-check), one on bed 2
        w.obs("sbp", [k * 3600.0, k * 3600.0 + 600, k * 3600.0 + 1500], [95.0, 95.0, 130.0])
    w.obs("sbp", [0.0, 600.0], [95.0, 95.0], bed="2")
    assert w.store is not None
    burden = w.store.burden(days=1, now=T0 + 86_400)
    assert [(b.bed, b.code, b.alarms) for b in burden] == [
        ("1", "sbp.news2.2", 3), ("2", "sbp.news2.2", 1)]
    assert burden[0].per_day == 3.0
    w.store.close()
    import contextlib as cl
    import io

    from monitor.cli import main
    buf = io.StringIO()
    with cl.redirect_stdout(buf):
        assert main(["alarms", "audit", "--store", str(tmp_path), "--json", "--limit", "2"]) == 0
    lines = orjson.loads(buf.getvalue())
    assert [(x["bed"], x["action"]) for x in lines] == [("2", "firing"), ("1", "resolved")]


def test_predicted_sbp_low_hands_over_to_the_value_alarm_and_stays_quiet_while_it_latches(
) -> None:
    w = Ward(settings=AlarmSettings(escalate_high_s=0, escalate_medium_s=0))
    ts = np.arange(0, 8 * 900.0, 900.0)  # NIBP every 15 min, stable for 2 h
    assert w.obs("sbp", ts, [130, 129, 131, 130, 128, 130, 129, 130]) == []
    fall = ts[-1] + 900 * np.arange(1, 8)
    assert w.obs("sbp", fall, [120, 108, 96, 86, 92, 95, 96]) == [
        # (108 at 8100 scores NEWS2 1: off by default, no alarm)
        # 96 at 9000: four falling readings, -0.8 mm[Hg]/min: ≤ 90 predicted in 8 min.
        # (SBP 91-100 waits for a confirming reading; the next one is 86.)
        (9000.0, "sbp.low.predicted", "firing"),
        (9900.0, "sbp.news2.3", "firing"),
        (9900.0, "sbp.low.predicted", "resolved"),  # the value alarm takes over
        # 92, 95, 96 afterwards: sbp.news2.3 is latched (nobody acknowledged it), so the
        # prediction has nothing to add, and sbp.news2.2 waits behind the latch
    ]
    assert "-0.8 mm[Hg]/min" in w.raw[0]["message"]
    assert "threshold reached" in w.raw[-1]["message"]


def test_the_station_acknowledges_through_the_same_code() -> None:
    w = Ward()
    w.obs("map", [0.0], [60.0])
    aid = w.alarm_id("map.low")
    out, error = w.p.acknowledge("4A", "1", {"id": aid, "by": "nurse.kim", "action": "ack",
                                             "reason": "fluids started"}, T0 + 30)
    assert error is None
    assert w._events(out.alerts) == [(30.0, "map.low", "acknowledged")]
    assert ["a", w.raw[-1]] in out.history  # and to history, like every event
    out, error = w.p.acknowledge("4A", "1", {"id": aid, "by": "nurse.kim", "action": "ack"},
                                 T0 + 31)
    assert error is None  # acknowledging again is allowed (it restarts nothing)
    out, error = w.p.acknowledge("4A", "1", {"id": "gone", "by": "kim", "action": "ack"},
                                 T0 + 32)
    assert error is not None and "no active alarm" in error and out.alerts == []


def test_a_steady_heart_rate_fall_predicts_bradycardia_and_hands_over() -> None:
    w = Ward()
    assert w.obs("hr", *steady(1800, 70)) == []
    # from 30 min: -1.5 /min, reaching 40 at 50 min (3000 s)
    ts = 1800 + np.arange(0.0, 1800, 5.0)
    fall = np.maximum(70 - 1.5 * (ts - 1800) / 60, 32)
    vs = np.round(fall + np.random.default_rng(2).normal(0, 1, ts.size))
    assert w.obs("hr", ts, vs) == [
        # 58 /min, Theil-Sen -1.4 /min/min over 12 min, monotone: 40 in under 15 min
        (2340.0, "hr.low.predicted", "firing"),  # 11 min before 40
        (2925.0, "hr.news2.3", "firing"),  # the first ≤40 believed, then its 10 s
        (2925.0, "hr.low.predicted", "resolved"),  # handed over, with no gap between
        (3045.0, "hr.news2.3", "escalated"),
    ]
    assert "-1.4 /min/min" in w.raw[0]["message"]


def test_rising_pressure_and_glucose_predict_their_high_thresholds() -> None:
    w = Ward()
    ts = np.arange(0, 3 * 3600, 900.0)  # NIBP every 15 min: 2 h steady, then +15 a reading
    assert w.obs("sbp", ts, [150, 152, 149, 151, 150, 151, 150, 150, 165, 178, 196, 208]) == [
        (9000.0, "sbp.high.predicted", "firing"),  # 196, +1.0 /min: 220 within 30 min
        (9900.0, "sbp.high.predicted", "escalated"),
    ]
    # CGM every 5 min: 3 h at 160, then +2 mg/dL/min, over 250 from 13500 s
    ts = np.arange(0, 6 * 3600, 300.0)
    noise = np.random.default_rng(3).normal(0, 2, ts.size)
    vs = np.round(np.where(ts < 3 * 3600, 160, 160 + 2 * (ts - 3 * 3600) / 60) + noise)
    assert [e for e in w.obs("glucose", ts, vs, bed="2") if e[2] != "escalated"] == [
        (12000.0, "glucose.high.predicted", "firing"),  # 25 min ahead
        # the value alarm waits 15 min above 250 (one high CGM reading is not enough);
        # the prediction holds until it takes over
        (14700.0, "glucose.high.l2", "firing"),
        (14700.0, "glucose.high.predicted", "resolved"),
    ]


def test_a_high_alarm_hovering_at_its_limit_writes_one_latched_line(tmp_path: Path) -> None:
    """SBP 88 / 95 / 88 / 95 ...: sbp.news2.3 latches each time it clears and is back each
    time it returns. The audit log says so once, not once per reading: a nurse's
    acknowledgement must not scroll out of view behind it."""
    w = Ward(tmp_path / "alarms.db")
    got = w.obs("sbp", np.arange(0, 3600, 300), [88, 95] * 6)
    assert got == [(0.0, "sbp.news2.3", "firing"), (300.0, "sbp.news2.3", "escalated")]
    w.tick(3600)
    assert w.store is not None
    actions = [e["action"] for e in reversed(w.store.audit_log())]
    assert actions.count("latched") == 1
    (a, gs), = w.engine.active()
    assert gs.latched and gs.latch_logged
    # the next alarm of the rule gets its own line
    w.control("ack", {"id": a.id, "by": "nurse.kim", "action": "ack"}, at=3700)
    w.obs("sbp", [3900, 4200], [86, 96])
    w.tick(4300)
    actions = [e["action"] for e in reversed(w.store.audit_log())]
    assert actions.count("latched") == 2
