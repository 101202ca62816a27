"""Device presence through the bridge: birth, silence, and the last will when it dies."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import services_mod
from tests.edge.devices import (
    MllpClient,
    bridge_settings,
    clear_presence,
    listening,
    oru,
    running_bridge,
    spawn_bridge,
    subscriber,
)
from tests.monitor.helpers import eventually


async def _statuses(sub: Any, n: int) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for _ in range(n):
        topic, body = await sub.next(within=20)
        out[topic] = body
    return out


async def test_a_killed_bridge_leaves_its_beds_offline_by_last_will(
        services: Any, tmp_path: Path) -> None:
    url = services.started["mosquitto"].url
    port = services_mod.free_port()
    proc = spawn_bridge(url, port, tmp_path, client_id="bridge-will-test")
    try:
        await eventually(lambda: listening(port), "the bridge to listen", within=60)
        now = dt.datetime.now(dt.UTC)
        async with subscriber(url, "wardwatch/v1/status/9F/#", raw=True) as sub:
            async with MllpClient(port) as dev:
                for bed in ("1", "2"):
                    ack = await dev.send(oru(f"P{bed}", f"9F^{bed}",
                                             [("8867-4^HR^LN", "80", "/min", now)], sent=now))
                    assert ack.msa[1] == "AA"
            assert await _statuses(sub, 2) == {"wardwatch/v1/status/9F/1": b"online",
                                               "wardwatch/v1/status/9F/2": b"online"}
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert await _statuses(sub, 2) == {"wardwatch/v1/status/9F/1": b"offline",
                                               "wardwatch/v1/status/9F/2": b"offline"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await clear_presence(url, [("9F", "1"), ("9F", "2")])


@pytest.mark.parametrize("how", ["silence", "clean stop"])
async def test_a_silent_bed_and_a_stopped_bridge_say_offline(
        services: Any, tmp_path: Path, how: str) -> None:
    url = services.started["mosquitto"].url
    ward = "9G" if how == "silence" else "9H"
    settings = bridge_settings(url, tmp_path / "store",
                               device_timeout_s=1.0 if how == "silence" else 600.0)
    now = dt.datetime.now(dt.UTC)
    async with subscriber(url, f"wardwatch/v1/status/{ward}/#", raw=True) as sub:
        async with running_bridge(settings) as bridge, MllpClient(bridge.port) as dev:
            ack = await dev.send(oru("S1", f"{ward}^1", [("8867-4^HR^LN", "80", "/min", now)],
                                     sent=now))
            assert ack.msa[1] == "AA"
            assert await sub.next(within=20) == (f"wardwatch/v1/status/{ward}/1", b"online")
            if how == "silence":
                assert await sub.next(within=20) == (f"wardwatch/v1/status/{ward}/1",
                                                     b"offline")
                await bridge.wait_for(lambda: bridge.bridge.registry.get_sample_value(
                    "wardwatch_bridge_beds_online") == 0, "the gauge to count it offline")
        if how == "clean stop":
            assert await sub.next(within=20) == (f"wardwatch/v1/status/{ward}/1", b"offline")
