"""deploy/mosquitto as an installer uses it: Debian's main config, our files in conf.d.

The shipped files are used as they are; only their absolute paths (/etc/mosquitto,
/var/lib/mosquitto) move into a temp directory and the two listeners to free ports.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from monitor.config import AckSettings, MetricsSettings, MqttSettings, Settings, StoreSettings
from monitor.mqtt import client_args
from tests.conftest import REPO, RunningDaemon, services_mod
from tests.monitor.helpers import eventually

pytestmark = pytest.mark.integration

DEBIAN_MAIN = """\
# Place your local configuration in /etc/mosquitto/conf.d/
persistence true
persistence_location /var/lib/mosquitto/
log_dest stderr
include_dir /etc/mosquitto/conf.d
"""
USERS = {"wardwatch": "pw-w", "4A/12": "pw-d", "station-4A": "pw-s", "bridge": "pw-b"}


@dataclass(frozen=True)
class Broker:
    port: int  # the ward network's listener (1883 as shipped)
    daemon_port: int  # the daemon's loopback listener (1884)
    tls_port: int  # the ward network's TLS listener, client certificates (8883)
    pki: Path  # deploy/pki/make-test-pki.sh's output: ca.crt, <name>.crt/.key


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    etc, var = tmp_path / "etc", tmp_path / "var"
    (etc / "conf.d").mkdir(parents=True)
    var.mkdir()
    port, daemon_port = services_mod.free_port(), services_mod.free_port()
    tls_port = services_mod.free_port()
    subprocess.run([str(REPO / "deploy" / "pki" / "make-test-pki.sh"), str(etc / "certs")],
                   check=True, capture_output=True)

    def place(text: str) -> str:
        return (text.replace("/etc/mosquitto/", f"{etc}/").replace("/var/lib/mosquitto/",
                                                                    f"{var}/")
                .replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
                .replace("listener 1884 127.0.0.1\n", f"listener {daemon_port} 127.0.0.1\n")
                .replace("listener 8883\n", f"listener {tls_port} 127.0.0.1\n"))

    # as services.py: stay the test's user (as root Mosquitto would switch to a
    # `mosquitto` user that cannot read the test's temp directory)
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    (etc / "mosquitto.conf").write_text(place(DEBIAN_MAIN) + f"user {user}\n")
    shipped = (REPO / "deploy" / "mosquitto" / "wardwatch.conf").read_text()
    assert "listener 1883\n" in shipped and "listener 1884 127.0.0.1\n" in shipped
    assert "listener 8883\n" in shipped
    assert "acl_file /etc/mosquitto/wardwatch.acl\n" in shipped
    (etc / "conf.d" / "wardwatch.conf").write_text(place(shipped))
    shutil.copy(REPO / "deploy" / "mosquitto" / "wardwatch.acl", etc / "wardwatch.acl")
    first = True
    for user, pw in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if first else []),
                        str(etc / "passwd"), user, pw], check=True)
        first = False
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(etc / "mosquitto.conf")],
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not all(_listening(p) for p in (port, daemon_port, tls_port)):
            if proc.poll() is not None:
                raise AssertionError(f"mosquitto did not start: {proc.stderr.read()!r}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "mosquitto did not listen"
            time.sleep(0.1)
        yield Broker(port, daemon_port, tls_port, etc / "certs")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _client(port: int, user: str | None, client_id: str) -> tuple[paho.Client, Any]:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if user is not None:
        c.username_pw_set(user, USERS[user])
    result: dict[str, Any] = {}
    ready = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result["rc"] = rc
        ready.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10)
    return c, result["rc"]


def _daemon_settings(broker: Broker, store: Path) -> Settings:
    """wardwatch on its loopback listener with its password; station-4A's acks trusted."""
    return Settings(
        mqtt=MqttSettings(url=f"mqtt://wardwatch:{USERS['wardwatch']}@127.0.0.1:"
                              f"{broker.daemon_port}", client_id="wardwatch"),
        metrics=MetricsSettings(port=0), store=StoreSettings(dir=str(store / "store")),
        acks=AckSettings(trusted_clients=("station-4A",)))


async def _hr_140_alarm_and_ack(station: aiomqtt.Client, device: aiomqtt.Client,
                                ack_topics: tuple[str, ...]) -> dict[str, Any]:
    """HR 140 for 40 s from bed 4A/12: the station sees hr.news2.3 fire, sends the ack on
    each of ``ack_topics`` in turn, and gets the next alert (the acknowledgement)."""
    now = time.time()
    obs = [{"metric": "hr", "t": now - 40 + 5 * k, "v": 140, "unit": "/min"} for k in range(9)]
    await station.subscribe("wardwatch/v1/alerts/4A/#", qos=1)
    await device.publish("wardwatch/v1/obs/4A/12", orjson.dumps({"obs": obs}), qos=1)
    async with asyncio.timeout(30):
        firing = orjson.loads(bytes((await anext(station.messages)).payload))  # type: ignore[arg-type]
    assert (firing["code"], firing["state"]) == ("hr.news2.3", "firing")
    ack = {"id": firing["id"], "by": "nurse.kim", "action": "ack"}
    for topic in ack_topics:
        await station.publish(topic, orjson.dumps(ack), qos=1)
    async with asyncio.timeout(30):
        acked: dict[str, Any] = orjson.loads(bytes((await anext(station.messages)).payload))  # type: ignore[arg-type]
    return acked


def _listener(broker: Broker, topics: list[str],
              client_id: str = "wardwatch") -> tuple[paho.Client, list[str]]:
    """wardwatch's user on its listener, subscribed to ``topics``: what reaches it."""
    got: list[str] = []
    subscribed = threading.Event()
    daemon, rc = _client(broker.daemon_port, "wardwatch", client_id)
    assert not rc.is_failure
    daemon.on_message = lambda _c, _u, msg: got.append(msg.topic)
    daemon.on_subscribe = lambda *_: subscribed.set()
    daemon.subscribe([(t, 1) for t in topics])
    assert subscribed.wait(10)
    return daemon, got


def test_shipped_broker_config_starts_refuses_anonymous_and_confines_each_device(
        broker: Broker) -> None:
    _, rc = _client(broker.port, None, "anon")
    assert rc.is_failure  # Mosquitto 2 with allow_anonymous false: not authorised

    daemon, got = _listener(broker, ["wardwatch/v1/obs/#", "wardwatch/v1/status/#"])

    device, rc = _client(broker.port, "4A/12", "device-4A-12")
    assert not rc.is_failure
    station, _ = _client(broker.port, "station-4A", "station-4A")
    for c, topic in ((device, "wardwatch/v1/obs/4A/13"),   # another bed: denied
                     (device, "wardwatch/v1/status/4B/1"),  # another ward: denied
                     (station, "wardwatch/v1/obs/4A/12"),   # a station is no device
                     (device, "wardwatch/v1/obs/4A/12"),    # its own bed
                     (device, "wardwatch/v1/status/4A/12")):
        c.publish(topic, b"{}", qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # each publish was acknowledged before the next was sent, so anything the broker let
    # through earlier would have reached the subscriber before these two
    assert got == ["wardwatch/v1/obs/4A/12", "wardwatch/v1/status/4A/12"]
    for c in (daemon, device, station):
        c.disconnect()
        c.loop_stop()


async def test_nobody_takes_the_daemons_id_and_acks_carry_the_broker_user(
        broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The daemon on its loopback listener; devices and stations on the ward listener."""
    caplog.set_level("INFO", logger="monitor.intake")
    rd = RunningDaemon(_daemon_settings(broker, tmp_path))
    daemon = await rd.start()

    def reconnects() -> float:
        return daemon.registry.get_sample_value("wardwatch_mqtt_reconnects_total",
                                                {"client": "ingest"}) or 0.0

    def ward_client(user: str, identifier: str, port: int | None = None) -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", port or broker.port, username=user,
                              password=USERS[user], identifier=identifier)

    try:
        # three tries to connect as the daemon from the ward network
        for _ in range(3):
            async with ward_client("station-4A", "wardwatch"):
                pass
        async with ward_client("station-4A", "station") as station, \
                ward_client("4A/12", "device") as device:
            # another name and no name: the ACL drops both; then the station's own topic
            acked = await _hr_140_alarm_and_ack(station, device, (
                "wardwatch/v1/ack/4A/12/dr.nobody", "wardwatch/v1/ack/4A/12",
                "wardwatch/v1/ack/4A/12/station-4A"))
        assert acked["state"] == "acknowledged" and "by nurse.kim" in acked["message"]
        people = [(e["action"], e["by"], e["client"]) for e in daemon.alarm_store.audit_log()
                  if e["action"] not in ("firing", "latched")]
        assert people == [("acknowledged", "nurse.kim", "mqtt:station-4A")]
        assert reconnects() == 0  # the ward listener gave the intruder its own id

        # the same try on the daemon's listener does knock it off: that listener must stay
        # reachable from the broker's host only
        async with ward_client("station-4A", "wardwatch", broker.daemon_port):
            await eventually(lambda: reconnects() >= 1 or None, "the takeover")
    finally:
        await rd.stop()
    # the daemon logged its broker, reconnects and all, and never the password
    assert "wardwatch:***@127.0.0.1" in caplog.text
    assert USERS["wardwatch"] not in caplog.text


def _tls_client(broker: Broker, cert: str | None, client_id: str) -> tuple[paho.Client, Any]:
    """A paho client on the TLS listener, presenting ``cert`` (None: no certificate)."""
    import ssl

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    ctx = ssl.create_default_context(cafile=str(broker.pki / "ca.crt"))
    if cert is not None:
        ctx.load_cert_chain(broker.pki / f"{cert}.crt", broker.pki / f"{cert}.key")
    c.tls_set_context(ctx)
    result: dict[str, Any] = {}
    ready = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result["rc"] = rc
        ready.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result.setdefault("rc", f"disconnected: {rc}")
        ready.set()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    try:
        c.connect("localhost", broker.tls_port)
    except (ssl.SSLError, OSError) as exc:  # the handshake itself refused
        return c, exc
    c.loop_start()
    if not ready.wait(10):
        c.loop_stop()
        return c, "no CONNACK"
    return c, result["rc"]


def test_tls_listener_wants_a_certificate_and_its_cn_is_the_user(broker: Broker) -> None:
    """deploy/pki's certificates on the shipped TLS listener: no certificate, no
    connection; a device's certificate confines it to its own bed, as its password does;
    no certificate holder can forge an alert or an ack."""
    c, rc = _tls_client(broker, None, "anon")
    # refused: in the handshake, by a dropped connection, or by the CONNACK
    assert isinstance(rc, Exception) or str(rc).startswith("disconnected") or rc.is_failure, rc
    c.loop_stop()

    daemon, got = _listener(broker, ["wardwatch/v1/#"])
    device, rc = _tls_client(broker, "4A-12", "asks-to-be-wardwatch")
    assert not rc.is_failure, rc
    station, rc = _tls_client(broker, "station-4A", "station")
    assert not rc.is_failure, rc
    forged = {"id": "x", "by": "nurse.kim", "action": "ack"}
    for c, topic in ((device, "wardwatch/v1/obs/4A/13"),          # another bed
                     (device, "wardwatch/v1/alerts/4A/12"),       # a forged alert
                     (device, "wardwatch/v1/ack/4A/12/station-4A"),  # a forged ack
                     (device, "wardwatch/v1/ack/4A/12"),
                     (station, "wardwatch/v1/obs/4A/12"),          # a station is no device
                     (device, "wardwatch/v1/obs/4A/12")):          # its own bed
        c.publish(topic, orjson.dumps(forged), qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 10
    while len(got) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == ["wardwatch/v1/obs/4A/12"]
    # the certificate's CN is also the client id: the daemon's session stays its own
    assert daemon.is_connected()
    for c in (daemon, device, station):
        c.disconnect()
        c.loop_stop()


async def test_the_whole_path_over_tls_with_client_certificates(broker: Broker,
                                                               tmp_path: Path) -> None:
    """A device and a station with certificates on the TLS listener; wardwatch on its
    loopback listener. HR 140 from the device reaches the station as an alarm, and the
    station's acknowledgement comes back under its certificate's name."""
    rd = RunningDaemon(_daemon_settings(broker, tmp_path))
    daemon = await rd.start()

    def tls(cert: str, identifier: str) -> aiomqtt.Client:
        # through wardwatch's own [mqtt] ca_file / cert_file / key_file handling
        return aiomqtt.Client(**client_args(
            f"mqtts://localhost:{broker.tls_port}", identifier=identifier,
            ca_file=str(broker.pki / "ca.crt"), cert_file=str(broker.pki / f"{cert}.crt"),
            key_file=str(broker.pki / f"{cert}.key")))

    try:
        async with tls("station-4A", "station") as station, tls("4A-12", "device") as device:
            acked = await _hr_140_alarm_and_ack(station, device,
                                                ("wardwatch/v1/ack/4A/12/station-4A",))
        assert acked["state"] == "acknowledged"
        people = [(e["action"], e["by"], e["client"]) for e in daemon.alarm_store.audit_log()
                  if e["action"] == "acknowledged"]
        assert people == [("acknowledged", "nurse.kim", "mqtt:station-4A")]
    finally:
        await rd.stop()


async def test_the_hl7_bridge_through_the_shipped_broker(broker: Broker, tmp_path: Path) -> None:
    """The bridge as user ``bridge`` on the broker host's listener: an ORU^R01 from bed 4A/12
    reaches the daemon (an alarm at the station), its presence is published, and the ACL
    keeps it from forging an alert."""
    import datetime as dt

    from tests.edge.devices import MllpClient, bridge_settings, oru, running_bridge

    rd = RunningDaemon(_daemon_settings(broker, tmp_path))
    await rd.start()
    url = f"mqtt://bridge:{USERS['bridge']}@127.0.0.1:{broker.daemon_port}"
    daemon, got = _listener(broker, ["wardwatch/v1/status/#"], client_id="wardwatch-listener")
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, username="station-4A",
                                  password=USERS["station-4A"], identifier="station") as station:
            await station.subscribe("wardwatch/v1/alerts/4A/#", qos=1)
            async with running_bridge(bridge_settings(url, tmp_path / "bridge")) as bridge, \
                    MllpClient(bridge.port) as dev:
                now = dt.datetime.now(dt.UTC).replace(microsecond=0)
                rows = [("8867-4^HR^LN", "140", "/min", now - dt.timedelta(seconds=40 - 5 * k))
                        for k in range(9)]
                assert (await dev.send(oru("T1", "4A^12", rows, sent=now))).msa[1] == "AA"
                async with asyncio.timeout(30):
                    firing = orjson.loads(bytes((await anext(station.messages)).payload))  # type: ignore[arg-type]
                assert (firing["bed"], firing["code"]) == ("12", "hr.news2.3")
                # the bridge's own connection tries to forge an alert; then the station acks
                # the real one: the next thing the station gets must be that ack's event
                forger = bridge.bridge._mqtt
                assert forger is not None
                forger.publish("wardwatch/v1/alerts/4A/12", b'{"forged": true}',
                               qos=1).wait_for_publish(10)
                await station.publish("wardwatch/v1/ack/4A/12/station-4A", orjson.dumps(
                    {"id": firing["id"], "by": "nurse.kim", "action": "ack"}), qos=1)
                async with asyncio.timeout(30):
                    after = orjson.loads(bytes((await anext(station.messages)).payload))  # type: ignore[arg-type]
                assert after.get("state") == "acknowledged", after
                await eventually(lambda: "wardwatch/v1/status/4A/12" in got or None,
                                 "the bed's presence")
    finally:
        daemon.disconnect()
        daemon.loop_stop()
        await rd.stop()
