"""Fixtures: the real services (started by deploy/dev/services.py) and running daemons."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from monitor.config import (
    HttpSettings,
    InfluxSettings,
    IngestSettings,
    MetricsSettings,
    MqttSettings,
    Settings,
    StoreSettings,
)
from monitor.daemon import Daemon

REPO = Path(__file__).resolve().parents[1]


# deploy/dev/services.py is a stdlib-only script (it runs before the venv exists).
sys.path.insert(0, str(REPO / "deploy" / "dev"))
import services as services_mod  # noqa: E402

WEBHOOK_PORT = services_mod.free_port()


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Mosquitto, InfluxDB 1.6, Prometheus and Alertmanager on free loopback ports.

    A service that cannot start is an error, never a skip.
    """
    # Alertmanager sends to a webhook the alerting test serves on WEBHOOK_PORT; the
    # deploy/prometheus rules load as they are, with `for:` cut to 1 s so a test sees
    # an alert fire without waiting minutes.
    svc = services_mod.Services(tmp_path_factory.mktemp("services"),
                                webhook=f"http://127.0.0.1:{WEBHOOK_PORT}/alerts",
                                rules_for="1s")
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()


class RunningDaemon:
    """A daemon in a task of the test's event loop; ``restart`` keeps its store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.daemon: Daemon | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Daemon:
        self.daemon = Daemon(self.settings)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.daemon.run(self._stop), name="daemon-under-test")
        waiter = asyncio.create_task(self.daemon.subscribed.wait())
        # the first daemon of a fresh checkout compiles the kernels (30-40 s here)
        await asyncio.wait((waiter, self._task), timeout=180,
                           return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            waiter.cancel()
            self._task.result()
        assert waiter.done(), "daemon did not subscribe within 180 s"
        return self.daemon

    async def stop(self) -> None:
        if self._stop is not None and self._task is not None:
            self._stop.set()
            await self._task
            self._stop = self._task = None

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        assert self.daemon is not None
        return self.daemon.registry.get_sample_value(name, labels or {}) or 0.0


def daemon_settings(services: Any, store: Path, **influx: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        mqtt=MqttSettings(url=services.started["mosquitto"].url, client_id=f"ww-test-{tag}"),
        ingest=IngestSettings(),
        influx=InfluxSettings(**{"url": services.started["influxdb"].url,
                                 "database": f"test_{tag}", "flush_interval_s": 0.1, **influx}),
        metrics=MetricsSettings(port=services_mod.free_port()),
        store=StoreSettings(dir=str(store)),
    )


@pytest.fixture
async def running(services: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    rd = RunningDaemon(daemon_settings(services, tmp_path))
    await rd.start()
    try:
        yield rd
    finally:
        await rd.stop()


STATION_PASSWORD = "correct horse battery"


@contextlib.asynccontextmanager
async def running_station(services: Any, store: Path, users: dict[str, tuple[str, Sequence[str]]],
                          **changes: Any) -> AsyncIterator[RunningDaemon]:
    """A daemon serving the station page on a free port, with ``users`` (name: (role,
    wards)) whose password is STATION_PASSWORD; ``changes`` replace settings."""
    settings = replace(daemon_settings(services, store),
                       http=HttpSettings(port=services_mod.free_port()), **changes)
    rd = RunningDaemon(settings)
    daemon = await rd.start()
    for name, (role, wards) in users.items():
        daemon.accounts.add_user(name, STATION_PASSWORD, role, wards=wards)
    try:
        yield rd
    finally:
        await rd.stop()
