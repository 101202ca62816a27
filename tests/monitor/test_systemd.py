"""The daemon under systemd: the shipped unit verifies cleanly, and a real ``wardwatch run``
says READY, pings the watchdog while its pipeline keeps up, and says STOPPING."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.daemon import Daemon
from monitor.systemd import Notifier
from tests.conftest import REPO, daemon_settings, services_mod
from tests.monitor.helpers import NotifySocket, spawn_daemon

UNITS = REPO / "deploy" / "systemd"


@pytest.mark.parametrize(("name", "lines"), [
    ("wardwatch.service", ("CacheDirectory=wardwatch", "StateDirectory=wardwatch\n",
                           "Environment=NUMBA_CACHE_DIR=/var/cache/wardwatch", "wardwatch run ")),
    ("wardwatch-bridge.service", ("StateDirectory=wardwatch/bridge", "wardwatch bridge "))])
def test_the_shipped_units_verify_cleanly_and_are_hardened(tmp_path: Path, name: str,
                                                           lines: tuple[str, ...]) -> None:
    text = (UNITS / name).read_text()
    for line in ("Type=notify", "WatchdogSec=30", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "User=wardwatch", "Restart=always", "StartLimitIntervalSec=0", *lines):
        assert line in text, line
    # verify it as installed, with ExecStart pointing at this checkout's wardwatch
    here = Path(sys.executable).parent / "wardwatch"
    unit = tmp_path / name
    unit.write_text(text.replace("/opt/wardwatch/.venv/bin/wardwatch", str(here)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, check=False)
    # systemd-analyze exits 0 even for unknown keys and bad values: it only warns
    complaints = [ln for ln in (proc.stdout + proc.stderr).splitlines() if str(unit) in ln]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr


def test_the_watchdog_stops_when_the_pipeline_is_wedged(services: Any, tmp_path: Path) -> None:
    daemon = Daemon(daemon_settings(services, tmp_path))
    try:
        assert daemon._healthy()  # nothing waiting
        daemon.raw.put_nowait(("wardwatch/v1/obs/4A/1", b"{}", time.time(), None))  # type: ignore[arg-type]
        assert daemon._healthy()  # a batch finished a moment ago
        daemon._progress -= 120  # ... and none since, with work waiting
        assert not daemon._healthy()
    finally:
        daemon.alarm_store.close()
        daemon.accounts.close()
        daemon.spool.close()


def test_outside_systemd_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_s == 0
    n.ready("watching")  # no socket: a no-op
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "30000000",
                      "WATCHDOG_PID": "1"})
    assert other.enabled and other.watchdog_s == 0  # another process's watchdog
    other.notify("READY=1")  # an unreachable socket is logged once, never raised
    other.close()


@pytest.mark.integration
@pytest.mark.parametrize("command", ["run", "bridge"])
async def test_a_real_process_says_ready_pings_and_says_stopping(services: Any, tmp_path: Path,
                                                                 command: str) -> None:
    from tests.edge.devices import spawn_bridge

    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "4000000"}
    if command == "run":
        proc = spawn_daemon(daemon_settings(services, tmp_path), tmp_path,
                            services_mod.free_port(), env=env)
        log = tmp_path / "daemon.log"
    else:
        proc = spawn_bridge(services.started["mosquitto"].url, services_mod.free_port(),
                            tmp_path, client_id="bridge-notify-test", env=env)
        log = tmp_path / "bridge.log"

    async def until(field: str, within: float) -> None:
        await asyncio.to_thread(notify.until, field, within, proc, log)

    try:
        await until("READY=1", 180)
        assert ("STATUS=watching" if command == "run" else "STATUS=listening on") in \
            " ".join(notify.got)
        await until("WATCHDOG=1", 10)
        notify.got.clear()
        await until("WATCHDOG=1", 10)  # and again: every clock tick / watchdog interval
        proc.send_signal(signal.SIGTERM)
        await until("STOPPING=1", 30)
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
