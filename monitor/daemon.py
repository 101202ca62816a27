"""The daemon: MQTT in → processor → sinks, joined by bounded queues.

Wiring goes from the sinks back to the source, and the source starts last. Stopping
drains downstream: the source stops taking messages, the processor empties its queue,
each sink delivers or spools what it holds, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from pathlib import Path
from typing import Any

import aiomqtt
from aiohttp import web
from prometheus_client import CollectorRegistry, start_http_server

from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.metrics import Metrics
from monitor.mqtt import client_args
from monitor.pipeline import Processor
from monitor.sinks import InfluxV1Sink, InfluxV2Sink, MqttPublisher, SqliteHistorySink
from monitor.spool import Sink, Spool, SpooledWriter
from monitor.vitals import METRICS

log = logging.getLogger(__name__)

RawMessage = tuple[str, bytes, float]


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


class Daemon:
    """One wardwatch process. ``await Daemon(settings).run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.processor = Processor(self.metrics, settings.ingest.limits())
        self.raw: asyncio.Queue[RawMessage | None] = asyncio.Queue(settings.ingest.queue_size)
        self.subscribed = asyncio.Event()
        self.metrics.views.queues["ingest"] = self.raw.qsize
        store = Path(settings.store.dir).expanduser()
        self.spool = Spool(store / "spool.db")
        self.history = SpooledWriter(
            self._history_sink(store), self.spool, self.metrics,
            batch_size=settings.influx.batch_size,
            flush_interval_s=settings.influx.flush_interval_s,
        )
        pub_args = client_args(
            settings.mqtt.url, identifier=f"{settings.mqtt.client_id}-pub",
            ca_file=settings.mqtt.ca_file, keepalive=settings.mqtt.keepalive,
        )
        self.publisher = SpooledWriter(
            MqttPublisher(pub_args, max_in_flight=settings.mqtt.max_in_flight),
            self.spool, self.metrics, batch_size=500, flush_interval_s=0.05,
        )
        self.metrics_port: int | None = None
        self.http_port: int | None = None

    def _history_sink(self, store: Path) -> Sink:
        inf = self.settings.influx
        if not inf.url:
            return SqliteHistorySink(store / "history.db")
        if inf.api == "v2":
            return InfluxV2Sink(inf.url, token=inf.token, org=inf.org, bucket=inf.bucket)
        return InfluxV1Sink(inf.url, inf.database, retention_policy=inf.retention_policy,
                            username=inf.username, password=inf.password)

    # -- stages ------------------------------------------------------------------
    async def _source(self, stop: asyncio.Event) -> None:
        """Subscribe and feed the raw queue; reconnect with capped, jittered backoff.

        A persistent session (fixed client id, clean_session off, QoS 1) lets the
        broker keep what arrives while we are away. paho acknowledges a QoS 1 message
        when it lands in the client's queue, so one client is reused across reconnects
        (its queue survives them) and its queue is drained into ours on shutdown.
        """
        m = self.settings.mqtt
        client = aiomqtt.Client(**client_args(
            m.url, identifier=m.client_id, clean_session=False, ca_file=m.ca_file,
            keepalive=m.keepalive,
        ))
        backoff = 0.5
        while not stop.is_set():
            try:
                async with client:
                    await client.subscribe(m.subscribe, qos=1)
                    log.info("subscribed to %s on %s", m.subscribe, m.url)
                    self.subscribed.set()
                    backoff = 0.5
                    consume = asyncio.create_task(self._consume(client), name="mqtt:consume")
                    halt = asyncio.create_task(stop.wait(), name="mqtt:halt")
                    await asyncio.wait((consume, halt), return_when=asyncio.FIRST_COMPLETED)
                    halt.cancel()
                    if consume.done():
                        consume.result()  # re-raises the MqttError that ended it
                    consume.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await consume
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                self.metrics.reconnects.labels("ingest").inc()
                log.warning("MQTT ingest connection lost (%s); reconnecting in %.1f s",
                            exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff * random.uniform(0.8, 1.2))
                backoff = min(30.0, backoff * 2)
        self.subscribed.clear()
        # Messages paho already acknowledged but we have not taken: aiomqtt has no
        # public way to drain its queue after disconnecting.
        pending = client._queue
        while not pending.empty():
            msg = pending.get_nowait()
            await self.raw.put((str(msg.topic), _payload_bytes(msg.payload), time.time()))

    async def _consume(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            await self.raw.put((str(msg.topic), _payload_bytes(msg.payload), time.time()))

    async def _process(self) -> None:
        batch_max = self.settings.ingest.batch_max
        while True:
            item = await self.raw.get()
            if item is None:
                return
            items = [item]
            last = False
            while len(items) < batch_max:
                try:
                    nxt = self.raw.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    last = True
                    break
                items.append(nxt)
            out = self.processor.process(items)
            await self.publisher.put(out.mqtt)
            await self.history.put(out.history)
            if last:
                return

    # -- HTTP ----------------------------------------------------------------------
    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({
            "subscribed": self.subscribed.is_set(),
            "queues": {k: f() for k, f in self.metrics.views.queues.items()},
            "spool": {k: f() for k, f in self.metrics.views.spools.items()},
            "streams": len(self.processor.streams),
        })

    async def _beds(self, _: web.Request) -> web.Response:
        """Latest value per stream and the active alarms, per bed."""
        st = self.processor.streams
        beds: dict[str, dict[str, Any]] = {}
        for i, (ward, bed, mid) in enumerate(st.keys):
            entry = beds.setdefault(f"{ward}/{bed}", {"ward": ward, "bed": bed, "vitals": {},
                                                       "alarms": []})
            entry["vitals"][METRICS[mid].name] = {
                "value": float(st.value[i]), "t": float(st.value_t[i]), "unit": METRICS[mid].unit,
            }
        for (ward, bed), (t, score) in self.processor.bed_scores.items():
            beds[f"{ward}/{bed}"]["anomaly"] = {"score": score, "t": t}
        for ev in self.processor.alarms.active.values():
            beds[f"{ev.ward}/{ev.bed}"]["alarms"].append(
                {k: getattr(ev, k) for k in ("id", "code", "priority", "state", "t", "value")}
            )
        return web.json_response(sorted(beds.values(), key=lambda b: (b["ward"], b["bed"])))

    async def _start_http(self) -> web.AppRunner | None:
        h = self.settings.http
        if not h.port:
            return None
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/api/beds", self._beds)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, h.host, h.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"cannot serve HTTP on {h.host}:{h.port}: {exc}") from exc
        self.http_port = h.port
        return runner

    # -- lifecycle -----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order without losing data."""
        ms = self.settings.metrics
        server = None
        if ms.port:
            try:
                server, _thread = start_http_server(ms.port, ms.host, registry=self.registry)
            except OSError as exc:
                raise ConfigError(f"cannot serve /metrics on {ms.host}:{ms.port}: {exc}") from exc
            self.metrics_port = ms.port
        started = time.perf_counter()
        self.processor.scorer.warm_up()  # before subscribing: no stall on the first data
        log.info("scoring kernels ready in %.1f s", time.perf_counter() - started)
        runner = await self._start_http()
        async with asyncio.TaskGroup() as tg:
            writers = [
                tg.create_task(self.history.run(), name="sink:history"),
                tg.create_task(self.publisher.run(), name="sink:mqtt"),
            ]
            processor = tg.create_task(self._process(), name="processor")
            halt_intake = asyncio.Event()
            source = tg.create_task(self._source(halt_intake), name="source:mqtt")
            log.info("wardwatch running; store in %s", self.settings.store.dir)
            await stop.wait()
            log.info("stopping: intake first, then flush and close the sinks")
            halt_intake.set()
            await source
            await self.raw.put(None)
            await processor
            await self.history.close()
            await self.publisher.close()
            await asyncio.gather(*writers)
        if runner is not None:
            await runner.cleanup()
        if server is not None:
            server.shutdown()
            server.server_close()
        self.spool.close()
        log.info("wardwatch stopped")
