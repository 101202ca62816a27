"""Fault injection against the real broker: crashes, floods, error pages. Exact counts."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from monitor.daemon import Daemon
from tests.conftest import RunningDaemon, daemon_settings, services_mod
from tests.monitor.helpers import eventually, mqtt_client, publish, spawn_daemon

pytestmark = pytest.mark.integration

BEDS = 20


def _hr_150(ward: str, bed: int, now: float) -> tuple[str, bytes]:
    """A minute of HR 150: hr.news2.3 (> 130 for 30 s) fires on this payload alone."""
    obs = [{"metric": "hr", "t": now - 60 + 5 * k, "v": 150, "unit": "/min"} for k in range(13)]
    return f"wardwatch/v1/obs/{ward}/{bed}", orjson.dumps({"obs": obs})


def _unsent(store: Path) -> int:
    with sqlite3.connect(store / "alarms.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox WHERE sent IS NULL").fetchone()[0])


async def _collect(sub: Any, into: list[dict[str, Any]], stop: asyncio.Event) -> None:
    async for msg in sub.messages:
        into.append(orjson.loads(msg.payload))
        if stop.is_set():
            return


async def test_alarm_events_committed_before_a_crash_are_published_once_after_restart(
        services: Any, tmp_path: Path) -> None:
    settings = daemon_settings(services, tmp_path)
    # The crash the review found: state and events committed, nothing published yet.
    # A daemon's processing stage commits them, and the process ends before its relay ran.
    crashed = Daemon(settings)
    now = time.time()
    msgs = [(*_hr_150("8A", bed, now), now) for bed in range(BEDS)]
    out = crashed.processor.process(msgs)
    assert len(out.alerts) == BEDS
    crashed.alarm_store.close()
    crashed.spool.close()
    crashed.accounts.close()
    assert _unsent(tmp_path) == BEDS

    url = settings.mqtt.url
    got: list[dict[str, Any]] = []
    rd = RunningDaemon(settings)
    async with mqtt_client(url) as sub:
        await sub.subscribe("wardwatch/v1/alerts/8A/#", qos=1)
        done = asyncio.Event()
        reader = asyncio.create_task(_collect(sub, got, done))
        await rd.start()
        await eventually(lambda: _unsent(tmp_path) == 0, "the outbox sent")
        await eventually(lambda: len(got) >= BEDS, "every event on the broker")
        await rd.stop()
        await rd.start()  # a clean restart sends nothing again
        await rd.stop()
        # a marker after everything: the subscriber has seen all that came before it
        await publish(url, "wardwatch/v1/alerts/8A/marker", {"bed": "marker"})
        await eventually(lambda: any(g.get("bed") == "marker" for g in got), "the marker")
        done.set()
        reader.cancel()
    events = [g for g in got if g.get("bed") != "marker"]
    assert Counter((e["bed"], e["code"], e["state"]) for e in events) == {
        (str(b), "hr.news2.3", "firing"): 1 for b in range(BEDS)}


async def _subscribed(proc: subprocess.Popen[bytes], http_port: int) -> None:
    async def probe() -> bool:
        assert proc.poll() is None, "the daemon exited"
        try:
            async with httpx.AsyncClient() as http:
                resp = await http.get(f"http://127.0.0.1:{http_port}/healthz")
        except httpx.HTTPError:
            return False
        return bool(resp.json()["subscribed"])
    await eventually(probe, "the daemon subscribed", within=180)


def _rows_of(store: Path, ward: str) -> int:
    with sqlite3.connect(store / "history.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM vitals WHERE ward = ?",
                              (ward,)).fetchone()[0])


def _history_rows(store: Path) -> int:
    try:
        with sqlite3.connect(store / "history.db") as db:
            return int(db.execute("SELECT COUNT(*) FROM vitals").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


async def test_sigkill_under_load_loses_no_observation_and_no_alarm_event(
        services: Any, tmp_path: Path) -> None:
    """20,000 observations; SIGKILL once some are stored, while the rest are on their way;
    restart. Every observation is stored exactly once (redelivered ones are not stored
    twice), and every alarm in the store was published, at most once more."""
    settings = daemon_settings(services, tmp_path)
    url = settings.mqtt.url
    got: list[dict[str, Any]] = []
    port = services_mod.free_port()
    t0 = time.time() - 3600
    n_obs = 20_000
    async with mqtt_client(url) as sub, mqtt_client(url) as pub:
        await sub.subscribe("wardwatch/v1/alerts/8B/#", qos=1)
        done = asyncio.Event()
        reader = asyncio.create_task(_collect(sub, got, done))
        proc = spawn_daemon(settings, tmp_path, port)

        async def load() -> None:
            # 200 beds x 100 samples, one observation per message, plus 20 alarming beds
            for k in range(100):
                for bed in range(200):
                    obs = {"metric": "hr", "t": t0 + 5 * k, "v": 80, "unit": "/min"}
                    await pub.publish(f"wardwatch/v1/obs/8L/{bed}", orjson.dumps(obs), qos=1)
                if k == 10:
                    for bed in range(BEDS):
                        await pub.publish(*_hr_150("8B", bed, time.time()), qos=1)

        try:
            await _subscribed(proc, port)
            publisher = asyncio.create_task(load())
            await eventually(lambda: _history_rows(tmp_path) >= 3000, "rows stored",
                             within=120)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        stored_at_kill = _history_rows(tmp_path)
        proc = spawn_daemon(settings, tmp_path, port)
        try:
            await _subscribed(proc, port)
            await publisher
            await eventually(lambda: _history_rows(tmp_path) >= n_obs + 13 * BEDS,
                             "every observation stored", within=240)
            await eventually(lambda: len({g["bed"] for g in got}) >= BEDS,
                             "every bed's alarm", within=120)
            await eventually(lambda: _unsent(tmp_path) == 0, "the outbox sent", within=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        await publish(url, "wardwatch/v1/alerts/8B/marker", {"bed": "marker"})
        await eventually(lambda: any(g.get("bed") == "marker" for g in got), "the marker")
        done.set()
        reader.cancel()
    assert proc.returncode == 0, (tmp_path / "daemon.log").read_text()[-2000:]
    assert 3000 <= stored_at_kill < n_obs  # the kill came mid-stream
    with sqlite3.connect(tmp_path / "history.db") as db:
        per_ward = dict(db.execute("SELECT ward, COUNT(*) FROM vitals GROUP BY ward"))
        distinct = db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT ward, bed, metric, t"
                              " FROM vitals)").fetchone()[0]
    assert per_ward == {"8L": n_obs, "8B": 13 * BEDS}  # every one, once
    assert distinct == n_obs + 13 * BEDS
    firing = Counter(g["bed"] for g in got if g.get("state") == "firing")
    assert set(firing) == {str(b) for b in range(BEDS)}
    assert max(firing.values()) <= 2  # at least once, at most once more after the crash
    with sqlite3.connect(tmp_path / "alarms.db") as db:
        active = {b for (b,) in db.execute(
            "SELECT bed FROM alarm_state WHERE ward = '8B'"
            " AND json_extract(state, '$.alarm.code') = 'hr.news2.3'")}
    assert active == set(firing)


async def test_a_flood_of_bad_input_does_not_hold_up_an_alarm_or_shutdown(
        services: Any, tmp_path: Path) -> None:
    settings = daemon_settings(services, tmp_path)
    url = settings.mqtt.url
    rd = RunningDaemon(settings)
    await rd.start()
    dead: list[dict[str, Any]] = []
    async with mqtt_client(url) as sub, mqtt_client(url) as pub:
        await sub.subscribe("wardwatch/v1/deadletter", qos=1)
        done = asyncio.Event()
        reader = asyncio.create_task(_collect(sub, dead, done))
        now = time.time()
        bad = orjson.dumps({"patient": "p-secret", "obs": [
            {"metric": "hr", "t": now, "v": -5, "unit": "/min"}] * 4000})
        for _ in range(50):  # 200,000 implausible observations
            await pub.publish("wardwatch/v1/obs/8C/flood", bad, qos=1)
        async with mqtt_client(url) as alerts:
            await alerts.subscribe("wardwatch/v1/alerts/8C/1", qos=1)
            topic, body = _hr_150("8C", 1, time.time())
            await pub.publish(topic, body, qos=1)
            async with asyncio.timeout(60):
                alarm = orjson.loads((await anext(alerts.messages)).payload)  # type: ignore[arg-type]
        assert (alarm["bed"], alarm["code"]) == ("1", "hr.news2.3")
        await eventually(lambda: rd.metric("wardwatch_ingest_rejected_total",
                                           {"reason": "implausible"}) == 200_000,
                         "every rejection counted", within=120)
        await rd.stop()  # flushes the open interval's summary
        await eventually(lambda: any(d.get("summary") for d in dead), "the summary")
        done.set()
        reader.cancel()
    full = [d for d in dead if not d.get("summary")]
    summaries = [d for d in dead if d.get("summary")]
    assert len(full) == 3  # one (reason, topic): the first three in full
    assert len(full) + sum(s["count"] for s in summaries) == 200_000
    assert all(s["reason"] == "implausible" for s in summaries)
    assert not any("p-secret" in orjson.dumps(d).decode() for d in dead)


async def test_error_responses_carry_the_security_headers(services: Any,
                                                          tmp_path: Path) -> None:
    settings = daemon_settings(services, tmp_path)
    from dataclasses import replace
    settings = replace(settings, http=replace(settings.http, port=services_mod.free_port()))
    rd = RunningDaemon(settings)
    await rd.start()
    try:
        base = f"http://127.0.0.1:{settings.http.port}"
        async with httpx.AsyncClient(base_url=base, follow_redirects=False) as http:
            for path, status in (("/no-such-page", 404), ("/api/beds", 401), ("/", 303)):
                resp = await http.get(path)
                assert resp.status_code == status, path
                assert "default-src 'self'" in resp.headers["Content-Security-Policy"], path
                assert resp.headers["X-Frame-Options"] == "DENY", path
            forbidden = await http.post("/api/ack", json={})
            assert forbidden.status_code in (401, 403)
            assert forbidden.headers["X-Frame-Options"] == "DENY"
    finally:
        await rd.stop()


class SteadyPublisher:
    """A device gateway as paho makes it: persistent session, QoS 1, re-sends what the
    broker had not acknowledged after a reconnect; publishes ``n`` observations in a
    thread at about ``rate`` per second."""

    def __init__(self, url: str, n: int, rate: float, t0: float) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        host, port = url.removeprefix("mqtt://").split(":")
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id="gw-steady",
                             clean_session=False)
        self.c.max_queued_messages_set(0)
        self.c.max_inflight_messages_set(1000)  # as a gateway sets it: 20 cannot keep pace
        self.c.reconnect_delay_set(0.2, 1)
        self.acked: dict[int, float] = {}  # packet id -> when the broker acknowledged it
        self.c.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.setdefault(
            mid, time.monotonic())
        self.c.connect(host, int(port))
        self.c.loop_start()
        self.n, self.rate, self.t0 = n, rate, t0
        self.sent = 0
        self.mids: list[int] = []

    def run(self) -> None:
        start = time.monotonic()
        for k in range(self.n):
            obs = {"metric": "hr", "t": self.t0 + 5 * (k // 100), "v": 80, "unit": "/min"}
            # while the broker is down paho keeps the message and sends it on reconnect
            self.mids.append(self.c.publish(f"wardwatch/v1/obs/8K/{k % 100}",
                                            orjson.dumps(obs), qos=1).mid)
            self.sent = k + 1
            ahead = start + (k + 1) / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def acknowledged(self) -> int:
        return len(self.acked.copy().keys() & set(self.mids))

    def acknowledged_at(self, k: int) -> float:
        """When the broker acknowledged observation ``k`` (first time)."""
        return self.acked[self.mids[k]]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def test_broker_sigkill_under_load_loses_only_what_the_broker_had_not_saved(services: Any,
                                                              tmp_path: Path) -> None:
    """Mosquitto is SIGKILLed mid-stream (2,000 msg/s) and started again on its data
    directory. The gateway re-sends what the broker had not acknowledged; the broker's
    saved session (every second) brings back the daemon's subscription and what was
    queued for it. What is lost is counted and must lie in the broker's unsaved second."""
    from dataclasses import replace

    from monitor.config import InfluxSettings

    settings = replace(daemon_settings(services, tmp_path), influx=InfluxSettings(url=""))
    rd = RunningDaemon(settings)
    await rd.start()
    await asyncio.sleep(2)  # the session, saved by the broker's 1-second autosave
    n = 20_000
    pub = SteadyPublisher(settings.mqtt.url, n, rate=2000, t0=time.time() - 3600)
    worker = asyncio.create_task(asyncio.to_thread(pub.run))
    try:
        await eventually(lambda: pub.sent >= 6000, "a third published", within=60)
        port = services.started["mosquitto"].port
        killed_at = time.monotonic()
        services.stop(("mosquitto",), kill=True)
        published_at_kill = pub.sent
        await asyncio.sleep(1)
        restarted_at = time.monotonic()
        services.start(("mosquitto",), ports={"mosquitto": port})
        await worker
        await eventually(lambda: pub.acknowledged() == n, "every publish acknowledged",
                         within=120)
        # a last sample on the same session: stored means everything before it was
        pub.c.publish("wardwatch/v1/obs/8M/1", orjson.dumps(
            {"metric": "hr", "t": time.time(), "v": 80, "unit": "/min"}), qos=1)
        await eventually(lambda: _rows_of(tmp_path, "8M") == 1, "the last sample stored",
                         within=120)
    finally:
        pub.close()
        await rd.stop()
    assert published_at_kill < n
    with sqlite3.connect(tmp_path / "history.db") as db:
        rows = db.execute("SELECT bed, t FROM vitals WHERE ward = '8K'").fetchall()
    t0 = min(t for _, t in rows)
    stored = [round((t - t0) / 5) * 100 + int(bed) for bed, t in rows]
    assert len(stored) == len(set(stored))  # no duplicate rows
    lost = sorted(set(range(n)) - set(stored))
    # Mosquitto acknowledges a publish once it holds it in memory and saves to disk every
    # second: a SIGKILL can lose what the killed broker acknowledged in its last second and
    # had not yet handed on. Nothing else may be missing: not what it acknowledged earlier,
    # not what the gateway sent while the broker was down, not what wardwatch had received.
    # The window is timed by the gateway's own acknowledgements, not by how far its
    # publishing loop got, which on a loaded machine runs seconds ahead of the socket.
    unsaved = [k for k in lost if not killed_at - 2.0 <= pub.acknowledged_at(k) < restarted_at]
    assert not unsaved, (len(lost), len(unsaved), unsaved[:5], unsaved[-5:])
    print(f"broker SIGKILL at {published_at_kill} of {n}: {n - len(lost)} stored, "
          f"{len(lost)} lost, 0 duplicated")
