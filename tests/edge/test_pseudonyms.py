"""Pseudonyms: the keyed hash, key rotation, and a planted identifier that no sink holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import secrets
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from monitor.config import PseudonymSettings
from monitor.errors import ConfigError
from monitor.pseudonym import Pseudonymizer
from tests.conftest import RunningDaemon, daemon_settings
from tests.edge.devices import MllpClient, bridge_settings, oru, running_bridge, subscriber
from tests.monitor.helpers import eventually, publish

PLANTED = "MRN-PLANTED-90210"


def _keys(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_same_identifier_same_pseudonym_and_no_identifier_in_it(tmp_path: Path) -> None:
    secret = secrets.token_hex(32)
    p = Pseudonymizer.from_file(_keys(tmp_path / "k", f"a1 {secret}"))
    one, two = p(PLANTED), p(PLANTED)
    assert one == two and one.startswith("a1-") and len(one) == 35
    assert "90210" not in one and p("MRN-OTHER") != one
    assert p(one) == one  # already a pseudonym: unchanged, not hashed twice
    other = Pseudonymizer.from_file(_keys(tmp_path / "k2", f"a1 {secrets.token_hex(32)}"))
    assert other(PLANTED) != one  # without the key it cannot be recomputed from a guess


def test_rotation_accepts_the_old_keys_pseudonyms_until_its_date(tmp_path: Path) -> None:
    old_secret, new_secret = secrets.token_hex(32), secrets.token_hex(32)
    old = Pseudonymizer.from_file(_keys(tmp_path / "old", f"k1 {old_secret}"))
    made_before = old(PLANTED)
    rotated = _keys(tmp_path / "rot", f"k2 {new_secret}", f"k1 {old_secret} 2027-01-31")
    during = Pseudonymizer.from_file(rotated)
    during._today = lambda: dt.date(2027, 1, 15)
    assert during(made_before) == made_before  # a gateway still on k1: passes
    assert during(PLANTED).startswith("k2-")  # new pseudonyms with the new key
    after = Pseudonymizer.from_file(rotated)
    after._today = lambda: dt.date(2027, 2, 1)
    assert after(made_before).startswith("k2-")  # k1 no longer vouches for it


@pytest.mark.parametrize(("line", "says"), [
    ("k1 abcd", "at least 32"), ("k1 zz" + "0" * 62, "hexadecimal"),
    ("k-1 " + "0" * 64, "ID SECRET"), ("k1 " + "0" * 64 + " 2027-02-30", "not a date")])
def test_a_bad_key_file_is_a_clear_error_that_never_shows_the_secret(
        tmp_path: Path, line: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as err:
        Pseudonymizer.from_file(_keys(tmp_path / "k", line))
    assert line.split()[1] not in str(err.value)


@pytest.mark.parametrize("history", ["influxdb", "sqlite"])
async def test_a_planted_identifier_reaches_no_sink(services: Any, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture,
                                                    history: str) -> None:
    """Bridge and daemon share a key. The identifier goes in through PID-3, an admission and
    a rejected observation; then every sink, store file, log and /metrics is searched."""
    caplog.set_level(logging.DEBUG)
    keys = _keys(tmp_path / "keys", f"kw {secrets.token_hex(32)}")
    url = services.started["mosquitto"].url
    dstore, bstore = tmp_path / "daemon", tmp_path / "bridge"
    settings = replace(daemon_settings(services, dstore, **({"url": ""} if history == "sqlite"
                                                            else {})),
                       pseudonym=PseudonymSettings(key_file=str(keys)))
    rd = RunningDaemon(settings)
    daemon = await rd.start()
    wire: list[bytes] = []
    try:
        # what wardwatch sends: the bridge's observations and presence for bed 1, alerts,
        # dead letters (not the test's own inputs)
        async with subscriber(url, "wardwatch/v1/+/4Z/1", raw=True) as sub, \
                subscriber(url, "wardwatch/v1/alerts/#", raw=True) as alerts, \
                subscriber(url, "wardwatch/v1/deadletter", raw=True) as dead, \
                running_bridge(bridge_settings(url, bstore, key_file=str(keys))) as bridge:
            await publish(url, "wardwatch/v1/admit/4Z/1", {"patient": PLANTED})
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            async with MllpClient(bridge.port) as dev:
                for i in range(12):  # HR 150: an alarm, with its message and value
                    when = now - dt.timedelta(seconds=60 - 5 * i)
                    ack = await dev.send(oru(f"M{i}", "4Z^1", [("8867-4^HR^LN", "150", "/min",
                                                                 when)],
                                             patient=PLANTED, sent=now))
                    assert ack.msa[1] == "AA"
            await publish(url, "wardwatch/v1/obs/4Z/2",
                          {"patient": PLANTED, "obs": [{"metric": "hr", "t": "yesterday",
                                                        "v": 1, "unit": "/min"}]})

            async def alarm_and_deadletter() -> bool:
                for q in (sub, alerts, dead):
                    while not q.queue.empty():
                        topic, body = q.queue.get_nowait()
                        if topic != "wardwatch/v1/admit/4Z/1":  # the test's own input
                            wire.append(body)
                joined = b"\n".join(wire)
                return b'"state":"firing"' in joined and b"bad_timestamp" in joined

            await eventually(alarm_and_deadletter, "an alarm and a dead letter")
            adm = daemon.processor.alarms.admissions[("4Z", "1")]["patient"]
            assert adm.startswith("kw-")  # the admission was stored, as a pseudonym
            await asyncio.sleep(1.0)  # history flushed (0.1 s interval)
            bridge_metrics = bridge.metrics_text()
        daemon_metrics = generate_latest(daemon.registry).decode()
        dump = tags = ""
        influx = settings.influx
        if history == "influxdb":
            async with httpx.AsyncClient(base_url=influx.url) as http:
                dump = (await http.get("/query", params={
                    "db": influx.database, "q": "SELECT * FROM /.*/"})).text
                tags = (await http.get("/query", params={
                    "db": influx.database, "q": "SHOW TAG VALUES WITH KEY =~ /.*/"})).text
            assert '"4Z"' in dump and '"series"' in dump  # history did arrive in InfluxDB
    finally:
        await rd.stop()
    files = {p: p.read_bytes() for root in (dstore, bstore) for p in root.rglob("*")
             if p.is_file()}
    assert any(adm.encode() in b for b in files.values())  # the pseudonym is there...
    if history == "sqlite":  # ... and the history too
        assert (dstore / "history.db").exists()
        with sqlite3.connect(dstore / "history.db") as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = "
                                               "'table'")]
            assert sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                       for t in tables) > 0
    haystacks = {"MQTT (obs, alerts, dead letters, status)": b"\n".join(wire),
                 "InfluxDB": (dump + tags).encode(), "daemon /metrics": daemon_metrics.encode(),
                 "bridge /metrics": bridge_metrics.encode(), "logs": caplog.text.encode(),
                 **{str(p): b for p, b in files.items()}}
    for where, text in haystacks.items():  # ... the identifier nowhere
        # the digits alone, not inside a longer number (a metric's float value may hold them)
        assert PLANTED.encode() not in text and not re.search(rb"(?<![0-9.])90210(?![0-9])",
                                                             text), where
