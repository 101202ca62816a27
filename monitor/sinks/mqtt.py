"""Publishes records (alarm events, or dead letters) at QoS 1 over its own connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import aiomqtt

from monitor.errors import SinkError
from monitor.spool import Record

log = logging.getLogger(__name__)


class MqttPublisher:
    """A sink of ``[topic, payload_text, qos]`` records.

    ``write`` returns only once the broker has acknowledged every QoS 1 message in the
    batch (PUBACK), so a batch that raised is spooled and re-sent as a whole: delivery
    is at least once. The connection is opened on first use and after any failure; with
    several brokers (a cluster's nodes), after a failure to the next one.
    """

    def __init__(self, client_args: dict[str, Any] | Sequence[dict[str, Any]], *,
                 max_in_flight: int = 100, timeout_s: float = 10.0, name: str = "mqtt",
                 ) -> None:
        self.name = name
        self._choices = [client_args] if isinstance(client_args, dict) else list(client_args)
        self._next = 0
        self._client: aiomqtt.Client | None = None
        self._max_in_flight = max_in_flight
        self._sem = asyncio.Semaphore(max_in_flight)
        self._timeout_s = timeout_s

    async def _connect(self) -> aiomqtt.Client:
        if self._client is None:
            args = self._choices[self._next % len(self._choices)]
            client = aiomqtt.Client(**args, timeout=self._timeout_s)
            # We bound in-flight publishes ourselves; aiomqtt warns above 10 by default.
            client.pending_calls_threshold = self._max_in_flight
            await client.__aenter__()
            self._client = client
        return self._client

    async def _drop(self) -> None:
        self._next += 1  # the next broker, if there are several
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    async def _publish(self, client: aiomqtt.Client, rec: Record) -> None:
        topic, payload, qos = rec
        async with self._sem:
            await client.publish(topic, payload, qos=int(qos), timeout=self._timeout_s)

    async def write(self, records: Sequence[Record]) -> None:
        try:
            client = await self._connect()
            await asyncio.gather(*(self._publish(client, r) for r in records))
        except aiomqtt.MqttError as exc:
            await self._drop()
            raise SinkError(f"MQTT publish: {exc}") from exc

    async def close(self) -> None:
        await self._drop()
