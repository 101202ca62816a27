"""``wardwatch bridge`` against a real TCP client and a real Mosquitto.

The client is a plain socket writing MLLP bytes, so framing can be split, joined and
broken the way real interface engines and serial-to-IP adapters do it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edge.bridge import Bridge
from tests.edge.devices import (
    BRIDGE_KEY,
    MllpClient,
    bridge_settings,
    oru,
    running_bridge,
    subscriber,
    write_key,
)

pytestmark = pytest.mark.asyncio


async def test_an_oru_becomes_wire_observations_and_an_aa(services: Any, tmp_path: Path) -> None:
    url = services.started["mosquitto"].url
    keys = write_key(tmp_path)
    settings = bridge_settings(url, tmp_path / "store", key_file=str(keys))
    async with subscriber(url, "wardwatch/v1/obs/4A/#") as got, \
            running_bridge(settings) as bridge, MllpClient(bridge.port) as dev:
        # the device's clock agrees with ours; it writes times with its own +01:00 offset
        t0 = dt.datetime.now(dt.timezone(dt.timedelta(hours=1))).replace(microsecond=0)
        msg = oru("MSG1", "4A^12^1", [
            ("8867-4^Heart rate^LN", "82", "/min^/min^UCUM", t0),
            ("150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "121", "mmHg", t0),
            ("15074-8^Glucose^LN", "5.4", "mmol/L", t0 + dt.timedelta(seconds=0.25)),
            ("150456^MDC_PULS_OXIM_SAT_O2^MDC", "97", "%", t0),
        ], patient="MRN-PLANTED-4711", sent=t0)
        ack = await dev.send(msg)
        assert ack.msa[:3] == ["MSA", "AA", "MSG1"], ack.text
        assert re.search(r"\|\d{14}\+0000\|\|ACK\^R01", ack.text), ack.text  # MSH-7, UTC
        assert "MDC\\S\\150456" in ack.msa[3]  # told what it does not watch (^ escaped)
        topic, body = await got.next()
        text = bridge.metrics_text()
    assert topic == "wardwatch/v1/obs/4A/12-1"
    assert body["patient"].startswith(f"{BRIDGE_KEY}-") and "4711" not in body["patient"]
    by = {o["metric"]: o for o in body["obs"]}
    assert set(by) == {"hr", "sbp", "glucose"}
    assert by["hr"] == {"metric": "hr", "t": t0.timestamp(), "v": 82.0, "unit": "/min"}
    assert by["sbp"]["unit"] == "mm[Hg]" and by["sbp"]["v"] == 121.0
    assert by["glucose"]["unit"] == "mmol/L" and by["glucose"]["t"] == t0.timestamp() + 0.25
    assert 'wardwatch_bridge_ignored_observations_total{code="MDC^150456"} 1.0' in text
    assert "MRN-PLANTED" not in text


async def test_framing_as_devices_really_send_it(services: Any, tmp_path: Path) -> None:
    url = services.started["mosquitto"].url
    settings = bridge_settings(url, tmp_path / "store")
    async with subscriber(url, "wardwatch/v1/obs/5B/#") as got, \
            running_bridge(settings) as bridge, MllpClient(bridge.port) as dev:
        now = dt.datetime.now(dt.UTC)

        def hr(cid: str, v: int) -> bytes:
            return oru(cid, "5B^3", [("8867-4^HR^LN", str(v), "/min", now)], sent=now)

        # one message split mid-segment over three reads
        one = b"\x0b" + hr("S1", 70) + b"\x1c\x0d"
        for a, b in ((0, 17), (17, 60), (60, len(one))):
            await dev.write(one[a:b])
            await asyncio.sleep(0.05)
        assert (await dev.read_ack()).msa[1:3] == ["AA", "S1"]
        # three messages in one read: three ACKs, in order
        await dev.write(b"".join(b"\x0b" + hr(f"J{i}", 71 + i) + b"\x1c\x0d" for i in range(3)))
        assert [(await dev.read_ack()).msa[2] for _ in range(3)] == ["J0", "J1", "J2"]
        # no start block: refused, and the connection goes on
        await dev.write(hr("NOVT", 99) + b"\x1c\x0d")
        assert (await dev.read_ack()).msa[1] == "AR"
        # declared UTF-8, but not
        bad = oru("ENC", "5B^3", [("8867-4^HR^LN", "75", "/min", now)], sent=now,
                  charset="UNICODE UTF-8", patient="M\xfcller").replace("M\xfcller".encode(),
                                                                      b"M\xfcller")
        assert (await dev.send(bad)).msa[1] == "AR"
        # a known code in a unit it cannot be: the whole message is refused (AE)
        ack = await dev.send(oru("UNIT", "5B^3", [("8867-4^HR^LN", "75", "/min", now),
                                                  ("8480-6^SBP^LN", "120", "cm[H2O]", now)],
                                 sent=now))
        assert ack.msa[1] == "AE" and "cm[H2O]" in ack.msa[3]
        # not ORU^R01
        adt = oru("ADT", "5B^3", [], sent=now).replace(b"ORU^R01", b"ADT^A01")
        assert (await dev.send(adt)).msa[1] == "AR"
        # only codes it does not watch: accepted, nothing published
        assert (await dev.send(oru("SPO2", "5B^3", [("59408-5^SpO2^LN", "96", "%", now)],
                                   sent=now))).msa[1] == "AA"
        # a 1 MB message: every observation arrives. Its times carry a fixed four-digit
        # fraction, so its length does not depend on the clock's microseconds.
        base = now.replace(microsecond=123_400)
        big_rows = [("8867-4^HR^LN", str(60 + i % 40), "/min",
                     base - dt.timedelta(seconds=20_000 - i)) for i in range(15_000)]
        big = oru("BIG", "5B^4", big_rows, sent=now)
        assert len(big) > 1_000_000
        ack = await dev.send(big, within=60)
        assert ack.msa[1:3] == ["AA", "BIG"]
        values: dict[str, list[float]] = {}
        want = 4 + 15_000
        while sum(len(v) for v in values.values()) < want:
            topic, body = await got.next(within=30)
            values.setdefault(topic, []).extend(o["v"] for o in body["obs"])
        text = bridge.metrics_text()
    assert values["wardwatch/v1/obs/5B/3"] == [70.0, 71.0, 72.0, 73.0]
    assert values["wardwatch/v1/obs/5B/4"] == [float(r[1]) for r in big_rows]
    for reason in ("framing", "encoding", "bad_unit", "unsupported_type"):
        assert f'wardwatch_bridge_refused_total{{reason="{reason}"}} 1.0' in text
    assert 'wardwatch_bridge_messages_total{ack="AA"} 6.0' in text


async def test_over_the_size_bound_is_refused_and_the_next_message_is_read(
        services: Any, tmp_path: Path) -> None:
    settings = bridge_settings(services.started["mosquitto"].url, tmp_path / "store",
                               max_message_bytes=50_000)
    now = dt.datetime.now(dt.UTC)
    async with running_bridge(settings) as bridge, MllpClient(bridge.port) as dev:
        rows = [("8867-4^HR^LN", "80", "/min", now)] * 2_000
        assert (await dev.send(oru("HUGE", "5B^3", rows, sent=now))).msa[1] == "AR"
        small = oru("SMALL", "5B^3", rows[:1], sent=now)
        assert (await dev.send(small)).msa[1:3] == ["AA", "SMALL"]


async def test_a_skewed_device_clock_is_measured_and_corrected(
        services: Any, tmp_path: Path) -> None:
    url = services.started["mosquitto"].url
    settings = bridge_settings(url, tmp_path / "store")
    async with subscriber(url, "wardwatch/v1/obs/6C/#") as got, \
            running_bridge(settings) as bridge, MllpClient(bridge.port) as dev:
        real = dt.datetime.now(dt.UTC).replace(microsecond=0)
        slow = real - dt.timedelta(hours=1)  # a device clock one hour behind
        assert (await dev.send(oru("K1", "6C^1", [("8867-4^HR^LN", "80", "/min", slow)],
                                   sent=slow))).msa[1] == "AA"
        ok = real - dt.timedelta(seconds=5)  # a few seconds is within the bound: kept
        assert (await dev.send(oru("K2", "6C^2", [("8867-4^HR^LN", "81", "/min", ok)],
                                   sent=ok))).msa[1] == "AA"
        bodies = dict([await got.next(), await got.next()])
        text = bridge.metrics_text()
    t_skewed = bodies["wardwatch/v1/obs/6C/1"]["obs"][0]["t"]
    assert abs(t_skewed - real.timestamp()) < 30  # moved onto the gateway's clock
    assert bodies["wardwatch/v1/obs/6C/2"]["obs"][0]["t"] == ok.timestamp()
    offset = float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(
        'wardwatch_bridge_clock_offset_seconds{bed="1",ward="6C"}')))
    assert 3590 < offset < 3630
    assert "wardwatch_bridge_clock_corrected_total 1.0" in text


async def test_spool_fills_while_the_broker_is_away_refuses_at_its_bound_and_drains_in_order(
        tmp_path: Path) -> None:
    from tests.conftest import services_mod

    port = services_mod.free_port()
    url = f"mqtt://127.0.0.1:{port}"
    broker = services_mod.Services(tmp_path / "broker")
    try:
        # a subscriber with a persistent session, made while the broker runs: what the
        # bridge delivers later waits for it whenever it reconnects
        broker.start(("mosquitto",), ports={"mosquitto": port})
        async with subscriber(url, "wardwatch/v1/obs/#", session="spool-test"):
            pass
        broker.stop()
        settings = bridge_settings(url, tmp_path / "store", spool_max_messages=3)
        now = dt.datetime.now(dt.UTC)
        async with running_bridge(settings) as bridge, MllpClient(bridge.port) as dev:
            await _three_hr_accepted(dev, "Q", "7D^1", 80, now)
            ack = await dev.send(oru("Q3", "7D^1", [("8867-4^HR^LN", "90", "/min", now)],
                                     sent=now))
            assert ack.msa[1] == "AE" and "spool full" in ack.msa[3]
            assert "wardwatch_bridge_spool_messages 3.0" in bridge.metrics_text()
            broker.start(("mosquitto",), ports={"mosquitto": port})
            async with subscriber(url, "wardwatch/v1/obs/#", session="spool-test") as got:
                values = [(await got.next(within=30))[1]["obs"][0]["v"] for _ in range(3)]
            await bridge.wait_for(lambda: bridge.bridge.spool.depth == 0, "the spool to empty")
        assert values == [80.0, 81.0, 82.0]
    finally:
        broker.stop()


async def test_bridge_config_rejects_a_vendor_code_for_an_unknown_metric(tmp_path: Path) -> None:
    from dataclasses import replace

    from monitor.errors import ConfigError

    s = bridge_settings("mqtt://127.0.0.1:1", tmp_path)
    s = replace(s, bridge=replace(s.bridge, codes={"ACME^7": "spo2"}))
    with pytest.raises(ConfigError, match="ACME"):
        Bridge(s)


async def test_a_bug_on_one_message_answers_ae_and_the_connection_goes_on(
        services: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge.bridge

    real = edge.bridge.map_message

    def buggy(msg: Any, *args: Any) -> Any:  # an injected bug for one control id
        if str(msg.segment("MSH")[10]) == "BUG":
            raise RuntimeError("injected")
        return real(msg, *args)

    monkeypatch.setattr(edge.bridge, "map_message", buggy)
    settings = bridge_settings(services.started["mosquitto"].url, tmp_path / "store")
    now = dt.datetime.now(dt.UTC)
    async with running_bridge(settings) as bridge, MllpClient(bridge.port) as dev:
        rows = [("8867-4^HR^LN", "80", "/min", now)]
        ack = await dev.send(oru("BUG", "5B^9", rows, sent=now))
        assert ack.msa[1] == "AE" and "internal error" in ack.msa[3]
        assert (await dev.send(oru("OK", "5B^9", rows, sent=now))).msa[1:3] == ["AA", "OK"]
        assert 'wardwatch_bridge_refused_total{reason="internal_error"} 1.0' in \
            bridge.metrics_text()


async def test_the_readmes_example_message_is_taken(services: Any, tmp_path: Path) -> None:
    from tests.conftest import REPO

    url = services.started["mosquitto"].url
    example = (REPO / "deploy" / "hl7" / "example-oru.hl7").read_bytes().replace(b"\n", b"\r")
    async with subscriber(url, "wardwatch/v1/obs/4A/12") as got, \
            running_bridge(bridge_settings(url, tmp_path / "store")) as bridge, \
            MllpClient(bridge.port) as dev:
        ack = await dev.send(example)
        assert ack.msa[1:] == ["AA", "MSG00001", "not watched: MDC\\S\\150456"], ack.text
        _, body = await got.next()
    assert [(o["metric"], o["v"]) for o in body["obs"]] == [("hr", 132), ("sbp", 88),
                                                            ("dbp", 52)]


async def test_through_jetstream_the_spool_gauges_show_what_waits_and_drain_with_the_stream(
        services: Any, tmp_path: Path) -> None:
    """``[bridge] nats``: while JetStream stores nothing (no stream for the subjects yet)
    the spooled messages show on /metrics; once a stream takes them, they leave the spool
    and the gauge says so."""
    import nats

    from tests.conftest import services_mod
    from tests.edge.devices import listening

    services_mod.ensure_installed(("nats-server",))
    port = services_mod.free_port()
    server = _jetstream_server(tmp_path, port)
    nc = None
    try:
        end = asyncio.get_running_loop().time() + 30
        while not await listening(port):
            assert asyncio.get_running_loop().time() < end, "nats-server did not start"
            await asyncio.sleep(0.1)
        settings = bridge_settings(services.started["mosquitto"].url, tmp_path / "store",
                                   nats=f"nats://127.0.0.1:{port}")
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        async with running_bridge(settings) as bridge, MllpClient(bridge.port) as dev:
            await _three_hr_accepted(dev, "J", "8E^1", 70, now)
            assert bridge.bridge.spool.depth == 3
            await bridge.wait_for(
                lambda: "wardwatch_bridge_spool_messages 3.0" in bridge.metrics_text(),
                "the spool's depth on /metrics")
            nc = await nats.connect(f"nats://127.0.0.1:{port}")
            js = nc.jetstream()
            await js.add_stream(name="TEST", subjects=["wardwatch.>"])
            await bridge.wait_for(lambda: bridge.bridge.spool.depth == 0, "the spool to drain")
            await bridge.wait_for(
                lambda: "wardwatch_bridge_spool_messages 0.0" in bridge.metrics_text(),
                "the drained spool on /metrics")
            assert (await js.stream_info("TEST")).state.messages == 3
    finally:
        if nc is not None:
            await nc.close()
        server.terminate()
        server.wait(30)


def _jetstream_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """One plain nats-server with JetStream on, its log in ``folder/nats.log``."""
    with open(folder / "nats.log", "wb") as log:
        return subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
                                 "-sd", str(folder / "js")], stdout=log, stderr=log)


async def _three_hr_accepted(dev: MllpClient, prefix: str, bed: str, base: int,
                             now: dt.datetime) -> None:
    """Send three ORUs of one HR each (``base``, +1, +2; a second apart); each gets AA."""
    for i in range(3):
        ack = await dev.send(oru(f"{prefix}{i}", bed, [
            ("8867-4^HR^LN", str(base + i), "/min", now + dt.timedelta(seconds=i))], sent=now))
        assert ack.msa[1] == "AA"
