"""Device presence for bridged beds: birth and last will on ``wardwatch/v1/status/{ward}/{bed}``.

An MQTT last will belongs to one connection, so each bed the bridge speaks for gets a
small connection of its own (no traffic but keep-alives), opened when the bed's first
message arrives. On connecting it publishes ``online`` (retained) and registers
``offline`` as its will: if the bridge dies or loses the network, the broker announces
every bed it carried as offline, and the daemon raises ``device.offline``. A bed that
stays silent for ``device_timeout_s`` is announced offline by the bridge itself and its
connection closed; its next message brings it back. On a clean stop the bridge announces
its beds offline too: nothing watches them through it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiomqtt

from monitor.config import TlsFiles
from monitor.mqtt import all_client_args

log = logging.getLogger(__name__)

STATUS = "wardwatch/v1/status/{ward}/{bed}"


class Presence:
    def __init__(self, url: str, *, client_id: str, tls_files: TlsFiles,
                 timeout_s: float, on_change: Callable[[str, str, bool], None]) -> None:
        self.url = url
        self.client_id = client_id
        self.tls_files = tls_files
        self.timeout_s = timeout_s
        self.on_change = on_change
        self._last: dict[tuple[str, str], float] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._stopping = False

    @property
    def beds(self) -> list[tuple[str, str]]:
        """Every bed this bridge has announced since it started."""
        return list(self._tasks)

    def seen(self, ward: str, bed: str) -> None:
        """A message from this bed has been spooled."""
        key = (ward, bed)
        self._last[key] = time.monotonic()
        task = self._tasks.get(key)
        if (task is None or task.done()) and not self._stopping:
            self._tasks[key] = asyncio.create_task(self._hold(ward, bed),
                                                   name=f"presence {ward}/{bed}")

    async def _hold(self, ward: str, bed: str) -> None:
        topic = STATUS.format(ward=ward, bed=bed)
        nodes = all_client_args(self.url, identifier=f"{self.client_id}-{ward}-{bed}",
                                **self.tls_files)
        will = aiomqtt.Will(topic, b"offline", qos=1, retain=True)
        online = False
        attempt = 0
        while not self._stopping:
            args = nodes[attempt % len(nodes)]  # a cluster's nodes: the next after a failure
            attempt += 1
            try:
                async with aiomqtt.Client(**args, will=will) as client:
                    await client.publish(topic, b"online", qos=1, retain=True)
                    if not online:
                        online = True
                        self.on_change(ward, bed, True)
                    while not self._stopping:
                        idle = time.monotonic() - self._last[(ward, bed)]
                        if idle >= self.timeout_s:
                            break
                        await asyncio.sleep(min(1.0, self.timeout_s - idle))
                    await client.publish(topic, b"offline", qos=1, retain=True)
                    self.on_change(ward, bed, False)
                    return
            except aiomqtt.MqttError as exc:
                log.info("presence of %s/%s: %s; again in 2 s", ward, bed, exc)
                await asyncio.sleep(2.0)

    async def close(self) -> None:
        """Announce every bed offline and close their connections."""
        self._stopping = True
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5.0)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
