"""End to end on the real services: Mosquitto in, alarms out, InfluxDB rows, Prometheus."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from monitor.ruleset import parse_overrides
from monitor.spool import Spool
from tests.conftest import WEBHOOK_PORT, RunningDaemon, daemon_settings, services_mod
from tests.monitor.helpers import eventually, influxql, mqtt_client, publish

pytestmark = pytest.mark.integration


async def test_hr_140_for_bed_12_alarms_on_mqtt_lands_in_influx_and_moves_metrics(
    running: RunningDaemon, services: Any
) -> None:
    url = running.settings.mqtt.url
    now = time.time()
    # 40 s of HR 140, one sample every 5 s: hr.news2.3 asks for 30 s of persistence
    obs = [{"metric": "hr", "t": now - 40 + 5 * k, "v": 140, "unit": "/min"} for k in range(9)]
    async with mqtt_client(url) as sub:
        await sub.subscribe("wardwatch/v1/alerts/4A/12", qos=1)
        await publish(url, "wardwatch/v1/obs/4A/12", {"patient": "p-1", "obs": obs})
        async with asyncio.timeout(30):
            msg = await anext(sub.messages)
    assert isinstance(msg.payload, bytes)
    alarm = orjson.loads(msg.payload)
    assert alarm["code"] == "hr.news2.3"
    assert alarm["priority"] == "high"
    assert alarm["state"] == "firing"
    assert (alarm["ward"], alarm["bed"], alarm["metric"]) == ("4A", "12", "hr")
    assert alarm["value"] == 140 and alarm["threshold"] == 130  # HR > 130
    assert alarm["t"] == pytest.approx(now - 10)  # the first sample 30 s after the onset
    assert set(alarm) == {"id", "ward", "bed", "metric", "code", "priority", "state", "t",
                          "value", "threshold", "forecast", "message"}

    # InfluxDB: the vital and the alarm, queried back with InfluxQL
    influx, db = running.settings.influx.url, running.settings.influx.database

    async def rows(q: str) -> list[dict[str, Any]]:
        return await influxql(influx, db, q)

    vitals = await eventually(
        lambda: rows("SELECT value FROM vitals WHERE ward='4A' AND bed='12' AND metric='hr'"),
        "the HR row in InfluxDB",
    )
    assert [r["value"] for r in vitals] == [140] * 9
    alarms = await eventually(lambda: rows("SELECT * FROM alarms"), "the alarm row")
    assert alarms[0]["code"] == "hr.news2.3" and alarms[0]["id"] == alarm["id"]

    # /metrics over HTTP
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{running.daemon.metrics_port}/metrics")).text
    assert 'wardwatch_ingest_observations_total{outcome="accepted"} 9.0' in text
    assert 'wardwatch_alarms_active{priority="high",ward="4A"} 1.0' in text
    assert 'wardwatch_bed_last_seen_age_seconds{bed="12",ward="4A"}' in text
    assert "wardwatch_ingest_lag_seconds_count 9.0" in text
    assert ('wardwatch_alarms_fired_total{bed="12",code="hr.news2.3",priority="high",'
            'ward="4A"} 1.0') in text
    assert "p-1" not in text  # no patient identifier in any label

    # ... and as a real Prometheus server scrapes it
    prom = services.started["prometheus"].url
    services.set_scrape_targets([f"127.0.0.1:{running.daemon.metrics_port}"])

    async def scraped() -> float | None:
        async with httpx.AsyncClient() as http:
            resp = await http.get(f"{prom}/api/v1/query", params={
                "query": 'wardwatch_alarms_active{ward="4A",priority="high"}'})
        result = resp.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    assert await eventually(scraped, "Prometheus to scrape the alarm gauge") == 1.0


async def test_ack_over_mqtt_is_audited_survives_a_restart_and_last_will_alarms(
    services: Any, tmp_path: Path
) -> None:
    settings = daemon_settings(services, tmp_path)
    # stale HR after 3 s instead of 60, so the wall-clock check shows within the test
    settings = replace(settings, rules={"*": parse_overrides(
        {"hr.stale": {"threshold": 3.0}}, "test")})
    url = settings.mqtt.url
    rd = RunningDaemon(settings)
    await rd.start()
    now = time.time()
    async with mqtt_client(url) as sub:
        await sub.subscribe("wardwatch/v1/alerts/4B/#", qos=1)
        await sub.subscribe("wardwatch/v1/deadletter", qos=1)
        await publish(url, "wardwatch/v1/obs/4B/3", {"obs": [
            {"metric": "sbp", "t": now - 10, "v": 84, "unit": "mm[Hg]"}]})
        async with asyncio.timeout(30):
            fired = orjson.loads((await anext(sub.messages)).payload)  # type: ignore[arg-type]
        assert (fired["code"], fired["state"]) == ("sbp.news2.3", "firing")
        await publish(url, "wardwatch/v1/ack/4B/3", {"id": "0000", "by": "nurse.kim",
                                                     "action": "ack"})
        await publish(url, "wardwatch/v1/ack/4B/3", {"id": fired["id"], "by": "nurse.kim",
                                                     "action": "snooze", "snooze_s": 900,
                                                     "reason": "doctor informed"})
        got: dict[str, Any] = {}
        async with asyncio.timeout(30):
            async for msg in sub.messages:
                body = orjson.loads(msg.payload)  # type: ignore[arg-type]
                got["dead" if msg.topic.matches("wardwatch/v1/deadletter") else "ack"] = body
                if len(got) == 2:
                    break
    assert got["dead"]["reason"] == "unknown_alarm"
    assert (got["ack"]["id"], got["ack"]["state"]) == (fired["id"], "acknowledged")
    assert "snoozed 15 min by nurse.kim: doctor informed" in got["ack"]["message"]
    assert rd.metric("wardwatch_commands_total", {"kind": "ack", "outcome": "rejected"}) == 1
    await rd.stop()

    # A new process on the same store: the snoozed alarm stays snoozed and silent
    await rd.start()
    assert rd.daemon is not None
    (active,) = [a for a, _ in rd.daemon.processor.alarms.active() if a.ward == "4B"]
    assert (active.id, active.state) == (fired["id"], "acknowledged")
    async with mqtt_client(url) as sub:
        await sub.subscribe("wardwatch/v1/alerts/4B/#", qos=1)
        await publish(url, "wardwatch/v1/obs/4B/3", {"obs": [
            {"metric": "sbp", "t": time.time(), "v": 83, "unit": "mm[Hg]"}]})
        # HR on bed 4 stops after one sample: stale on the wall clock after 3 s
        await publish(url, "wardwatch/v1/obs/4B/4", {"obs": [
            {"metric": "hr", "t": time.time(), "v": 75, "unit": "/min"}]})
        async with asyncio.timeout(30):
            stale = orjson.loads((await anext(sub.messages)).payload)  # type: ignore[arg-type]
        # nothing for bed 3 came first: the snoozed alarm did not fire again
        assert (stale["bed"], stale["code"], stale["state"]) == ("4", "hr.stale", "firing")

        # a bedside device dies without saying goodbye: the broker publishes its will
        device = await asyncio.to_thread(_connect_device_with_will, url, "4B", "5")
        await asyncio.to_thread(_drop_connection, device)
        async with asyncio.timeout(30):
            will = orjson.loads((await anext(sub.messages)).payload)  # type: ignore[arg-type]
        assert (will["bed"], will["code"], will["state"]) == ("5", "device.offline", "firing")
    await rd.stop()

    with sqlite3.connect(tmp_path / "alarms.db") as db:
        audit = db.execute("SELECT action, by, detail FROM audit WHERE alarm_id = ? ORDER BY seq",
                           (fired["id"],)).fetchall()
    assert [(a, b) for a, b, _ in audit] == [("firing", "wardwatch"), ("snoozed", "nurse.kim")]
    assert "doctor informed" in audit[1][2]


def _connect_device_with_will(url: str, ward: str, bed: str) -> Any:
    """A bedside device as paho sees it: a last will on its status topic."""
    import paho.mqtt.client as paho

    host, port = url.removeprefix("mqtt://").split(":")
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"device-{ward}-{bed}")
    c.will_set(f"wardwatch/v1/status/{ward}/{bed}", b"offline", qos=1)
    c.connect(host, int(port), keepalive=5)
    c.loop_start()
    c.publish(f"wardwatch/v1/status/{ward}/{bed}", b"online", qos=1).wait_for_publish(10)
    return c


def _drop_connection(c: Any) -> None:
    """Close the socket under paho, as a crash or a pulled cable would: no DISCONNECT."""
    c.loop_stop()
    c.socket().close()


async def test_bad_input_is_counted_dead_lettered_and_harms_no_other_stream(
    running: RunningDaemon,
) -> None:
    url = running.settings.mqtt.url
    now = time.time()
    good = {"obs": [{"metric": "glucose", "t": now, "v": 2.5, "unit": "mmol/L"}]}
    bad: list[tuple[str, bytes]] = [
        ("wardwatch/v1/obs/4A/7", b"{not json"),
        ("wardwatch/v1/obs/4A/7", orjson.dumps({"obs": [{"metric": "hr", "t": now,
                                                          "v": "fast", "unit": "/min"}]})),
        ("wardwatch/v1/obs/4A/7", orjson.dumps({"obs": [{"metric": "spo3", "t": now, "v": 97,
                                                          "unit": "%"}]})),
        ("wardwatch/v1/obs/4A/7", orjson.dumps({"obs": [{"metric": "sbp", "t": now, "v": 120,
                                                          "unit": "mg/dL"}]})),
        ("wardwatch/v1/obs/4A/7", b'{"obs":[{"metric":"hr","t":1,"v":NaN,"unit":"/min"}]}'),
        ("wardwatch/v1/obs/4A/7", orjson.dumps({"obs": [{"metric": "hr", "t": now + 86_400,
                                                          "v": 80, "unit": "/min"}]})),
        ("wardwatch/v1/obs/4A/7", orjson.dumps({"obs": [{"metric": "hr", "t": now - 30 * 86_400,
                                                          "v": 80, "unit": "/min"}]})),
        ("wardwatch/v1/obs/4A/7", b"[" * 300_000),
        ("wardwatch/v1/obs/4A", orjson.dumps(good)),
    ]
    expected = ["malformed_json", "wrong_type", "unknown_metric", "unit_mismatch",
                "non_finite", "timestamp_future", "timestamp_past", "oversized", "bad_topic"]
    async with mqtt_client(url) as sub:
        await sub.subscribe("wardwatch/v1/deadletter", qos=1)
        await sub.subscribe("wardwatch/v1/alerts/4A/8", qos=1)
        async with mqtt_client(url) as pub:
            for topic, payload in bad:
                await pub.publish(topic, payload, qos=1)
            await pub.publish("wardwatch/v1/obs/4A/8", orjson.dumps(good), qos=1)
        dead: list[dict[str, Any]] = []
        alert = None
        async with asyncio.timeout(30):
            async for msg in sub.messages:
                assert isinstance(msg.payload, bytes)
                body = orjson.loads(msg.payload)
                if msg.topic.matches("wardwatch/v1/deadletter"):
                    dead.append(body)
                else:
                    alert = body
                if alert is not None and len(dead) == len(expected):
                    break
    assert sorted(d["reason"] for d in dead) == sorted(expected)
    assert alert is not None and alert["code"] == "glucose.low.l2"
    for reason in expected:
        assert running.metric("wardwatch_ingest_rejected_total", {"reason": reason}) == 1
    assert running.metric("wardwatch_ingest_observations_total", {"outcome": "accepted"}) == 1
    assert running.daemon is not None and len(running.daemon.processor.streams) == 1


async def test_influx_outage_spools_to_disk_and_delivers_when_it_returns(
    services: Any, tmp_path: Path
) -> None:
    port = services_mod.free_port()
    extra = services_mod.Services(tmp_path / "influx-late")
    settings = daemon_settings(services, tmp_path / "store", url=f"http://127.0.0.1:{port}")
    rd = RunningDaemon(settings)
    await rd.start()
    try:
        now = time.time()
        await publish(settings.mqtt.url, "wardwatch/v1/obs/5C/1", {"obs": [
            {"metric": "sbp", "t": now + i, "v": 85 + i, "unit": "mm[Hg]"} for i in range(5)]})

        assert await eventually(
            lambda: rd.metric("wardwatch_spool_depth", {"sink": "influxdb"}), "spooled records"
        ) >= 5
        extra.start(("influxdb",), ports={"influxdb": port})  # InfluxDB comes back

        async def rows() -> list[dict[str, Any]]:
            return await influxql(extra.started["influxdb"].url, settings.influx.database,
                                  "SELECT value FROM vitals WHERE bed='1'")

        got = await eventually(rows, "spooled rows in InfluxDB", within=60)
        assert [r["value"] for r in got] == [85, 86, 87, 88, 89]
        assert await eventually(
            lambda: rd.metric("wardwatch_spool_depth", {"sink": "influxdb"}) == 0,
            "an empty spool",
        )
    finally:
        await rd.stop()
        extra.stop()


async def test_persistent_session_receives_what_arrived_while_stopped_and_keeps_state(
    services: Any, tmp_path: Path
) -> None:
    settings = daemon_settings(services, tmp_path)
    url = settings.mqtt.url
    rd = RunningDaemon(settings)
    await rd.start()
    now = time.time()
    await publish(url, "wardwatch/v1/obs/6D/2", {"obs": [
        {"metric": "hr", "t": now, "v": 72, "unit": "/min"}]})
    await eventually(lambda: (rd.metric("wardwatch_ingest_observations_total",
                                           {"outcome": "accepted"}) >= 1), "first sample")
    await rd.stop()

    # While the daemon is down, the broker keeps QoS 1 messages for its session.
    async with mqtt_client(url) as sub:
        await sub.subscribe("wardwatch/v1/alerts/6D/2", qos=1)
        await publish(url, "wardwatch/v1/obs/6D/2", {"obs": [
            {"metric": "hr", "t": now + 5 * k, "v": 140, "unit": "/min"} for k in range(1, 12)]})
        await rd.start()
        async with asyncio.timeout(30):
            msg = await anext(sub.messages)
    await rd.stop()
    assert isinstance(msg.payload, bytes)
    assert orjson.loads(msg.payload)["code"] == "hr.news2.3"


async def test_broker_restart_reconnects_and_keeps_stream_state(
    running: RunningDaemon, services: Any
) -> None:
    url = running.settings.mqtt.url
    now = time.time()
    # SBP 95, and the re-check 10 min later that confirms it (subscore 2 waits for one)
    await publish(url, "wardwatch/v1/obs/7E/4", {"obs": [
        {"metric": "sbp", "t": now - 600, "v": 95, "unit": "mm[Hg]"},
        {"metric": "sbp", "t": now, "v": 95, "unit": "mm[Hg]"}]})
    await eventually(lambda: (running.metric("wardwatch_alarm_events_total", {
        "ward": "7E", "priority": "medium", "state": "firing"}) >= 1), "the first alarm")

    port = services.started["mosquitto"].port
    services.stop(("mosquitto",))
    services.start(("mosquitto",), ports={"mosquitto": port})
    assert running.daemon is not None
    await eventually(lambda: (running.metric("wardwatch_mqtt_reconnects_total",
                                                {"client": "ingest"}) >= 1), "a reconnect")
    await asyncio.wait_for(running.daemon.subscribed.wait(), 60)

    async with mqtt_client(url) as sub:
        await sub.subscribe("wardwatch/v1/alerts/7E/4", qos=1)
        # Same band after the restart: no new alarm. Back to normal: the same alarm resolves.
        await publish(url, "wardwatch/v1/obs/7E/4", {"obs": [
            {"metric": "sbp", "t": now + 60, "v": 96, "unit": "mm[Hg]"},
            {"metric": "sbp", "t": now + 120, "v": 125, "unit": "mm[Hg]"}]})
        events = []
        async with asyncio.timeout(30):
            async for msg in sub.messages:
                assert isinstance(msg.payload, bytes)
                events.append(orjson.loads(msg.payload))
                if events[-1]["state"] == "resolved":
                    break
    # The first alarm may arrive again here: if the broker went down before it was
    # acknowledged, it was spooled and redelivered (at least once, never lost).
    *before, resolved = events
    assert all((e["state"], e["value"]) == ("firing", 95) for e in before)
    assert (resolved["code"], resolved["value"]) == ("sbp.news2.2", 125)


async def test_v2_api_against_influxdb_1_6_spools_and_counts_instead_of_losing(
    services: Any, tmp_path: Path
) -> None:
    # Debian's InfluxDB 1.6 has no /api/v2 (it arrived in 1.8): influxdb-client's write
    # gets 404. The daemon must keep the data and say so, not crash or drop it.
    settings = daemon_settings(services, tmp_path, api="v2", token="t", org="o", bucket="b")
    rd = RunningDaemon(settings)
    await rd.start()
    try:
        await publish(settings.mqtt.url, "wardwatch/v1/obs/8F/1", {"obs": [
            {"metric": "hr", "t": time.time(), "v": 70, "unit": "/min"}]})
        assert await eventually(
            lambda: (rd.metric("wardwatch_sink_failures_total", {"sink": "influxdb"}) >= 1),
            "a failed v2 write",
        )
        assert rd.metric("wardwatch_spool_depth", {"sink": "influxdb"}) == 1
    finally:
        await rd.stop()
    assert Spool(tmp_path / "spool.db").depth("influxdb") == 1  # still on disk after stop


async def test_bed_multivariate_score_reaches_influx(running: RunningDaemon) -> None:
    now = time.time()
    obs = [{"metric": m, "t": now, "v": v, "unit": "mm[Hg]"}
           for m, v in (("sbp", 118), ("dbp", 74), ("map", 89))]
    obs.append({"metric": "hr", "t": now, "v": 77, "unit": "/min"})
    await publish(running.settings.mqtt.url, "wardwatch/v1/obs/9G/5", {"obs": obs})
    influx, db = running.settings.influx.url, running.settings.influx.database

    async def rows() -> list[dict[str, Any]]:
        return await influxql(influx, db, "SELECT score FROM bed_anomaly WHERE bed='5'")

    got = await eventually(rows, "the bed's anomaly score in InfluxDB")
    assert len(got) == 1 and 0.0 <= got[0]["score"] <= 1.0


def test_prometheus_rules_and_alertmanager_config_are_valid() -> None:
    repo = Path(__file__).resolve().parents[2]
    for cmd in (["/usr/bin/promtool", "check", "rules",
                 str(repo / "deploy/prometheus/wardwatch.rules.yml")],
                ["/usr/bin/amtool", "check-config",
                 str(repo / "deploy/alertmanager/alertmanager.yml")]):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


async def test_failing_history_writes_page_through_prometheus_and_alertmanager(
    services: Any, tmp_path: Path
) -> None:
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/alerts", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", WEBHOOK_PORT).start()
    # InfluxDB "down": nothing listens on this port, so history is spooled
    settings = daemon_settings(services, tmp_path,
                               url=f"http://127.0.0.1:{services_mod.free_port()}")
    rd = RunningDaemon(settings)
    await rd.start()
    try:
        assert rd.daemon is not None and rd.daemon.metrics_port is not None
        services.set_scrape_targets([f"127.0.0.1:{rd.daemon.metrics_port}"])
        await publish(settings.mqtt.url, "wardwatch/v1/obs/8F/1", {"obs": [
            {"metric": "hr", "t": time.time(), "v": 80, "unit": "/min"}]})
        firing: dict[str, Any] | None = None
        async with asyncio.timeout(90):
            while firing is None:
                note = await received.get()
                firing = next((a for a in note["alerts"] if a["status"] == "firing"
                               and a["labels"]["alertname"] == "WardwatchHistoryWritesFailing"),
                              None)
        assert firing["labels"]["sink"] == "influxdb"
        assert firing["labels"]["severity"] == "warning"
        assert "spooled on disk" in firing["annotations"]["description"]
    finally:
        services.set_scrape_targets([])
        await rd.stop()
        await runner.cleanup()
