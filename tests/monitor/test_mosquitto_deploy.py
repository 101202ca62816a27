"""deploy/mosquitto as an installer uses it: Debian's main config, our files in conf.d.

The shipped files are used as they are; only their absolute paths (/etc/mosquitto,
/var/lib/mosquitto) move into a temp directory and the listener to a free port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import REPO, services_mod

pytestmark = pytest.mark.integration

DEBIAN_MAIN = """\
# Place your local configuration in /etc/mosquitto/conf.d/
persistence true
persistence_location /var/lib/mosquitto/
log_dest stderr
include_dir /etc/mosquitto/conf.d
"""
USERS = {"wardwatch": "pw-w", "4A/12": "pw-d", "station-4A": "pw-s"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    etc, var = tmp_path / "etc", tmp_path / "var"
    (etc / "conf.d").mkdir(parents=True)
    var.mkdir()
    port = services_mod.free_port()

    def place(text: str) -> str:
        return (text.replace("/etc/mosquitto/", f"{etc}/").replace("/var/lib/mosquitto/",
                                                                    f"{var}/")
                .replace("listener 1883", f"listener {port} 127.0.0.1"))

    # as services.py: stay the test's user (as root Mosquitto would switch to a
    # `mosquitto` user that cannot read the test's temp directory)
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    (etc / "mosquitto.conf").write_text(place(DEBIAN_MAIN) + f"user {user}\n")
    shipped = (REPO / "deploy" / "mosquitto" / "wardwatch.conf").read_text()
    assert "listener 1883\n" in shipped and "acl_file /etc/mosquitto/wardwatch.acl\n" in shipped
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
        while not _listening(port):
            if proc.poll() is not None:
                raise AssertionError(f"mosquitto did not start: {proc.stderr.read()!r}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "mosquitto did not listen"
            time.sleep(0.1)
        yield port
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


def test_shipped_broker_config_starts_refuses_anonymous_and_confines_each_device(
        broker: int) -> None:
    _, rc = _client(broker, None, "anon")
    assert rc.is_failure  # Mosquitto 2 with allow_anonymous false: not authorised

    got: list[str] = []
    subscribed = threading.Event()
    daemon, rc = _client(broker, "wardwatch", "wardwatch")
    assert not rc.is_failure
    daemon.on_message = lambda _c, _u, msg: got.append(msg.topic)
    daemon.on_subscribe = lambda *_: subscribed.set()
    daemon.subscribe([("wardwatch/v1/obs/#", 1), ("wardwatch/v1/status/#", 1)])
    assert subscribed.wait(10)

    device, rc = _client(broker, "4A/12", "device-4A-12")
    assert not rc.is_failure
    station, _ = _client(broker, "station-4A", "station-4A")
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
