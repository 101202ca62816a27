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

from monitor.alarmstore import AlarmStore
from monitor.clock import SteadyClock
from monitor.config import Settings
from monitor.errors import ConfigError, SinkError
from monitor.lifecycle import AlarmEngine
from monitor.metrics import Metrics
from monitor.mqtt import client_args
from monitor.pipeline import Output, Processor
from monitor.ruleset import RuleSet
from monitor.sinks import InfluxV1Sink, InfluxV2Sink, MqttPublisher, SqliteHistorySink
from monitor.spool import Sink, Spool, SpooledWriter
from monitor.station.auth import Accounts
from monitor.station.web import Station
from monitor.wire import CONTROL_SUBSCRIPTIONS

log = logging.getLogger(__name__)

RawMessage = tuple[str, bytes, float]


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


class Daemon:
    """One wardwatch process. ``await Daemon(settings).run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None,
                 clock: SteadyClock | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        # timers, ages and receipt times: wall time that a step of the system clock
        # does not move (see monitor.clock)
        self.clock = clock if clock is not None else SteadyClock()
        self.metrics.views.clock = self.clock
        self.metrics.views.clock_step = self.clock.offset
        store = Path(settings.store.dir).expanduser()
        self.alarm_store = AlarmStore(store / "alarms.db")
        engine = AlarmEngine(RuleSet(settings.rules), settings.alarms, store=self.alarm_store,
                             system_bed=settings.mqtt.client_id)
        self.processor = Processor(self.metrics, settings.ingest.limits(), engine,
                                   trend_hours=settings.http.trend_hours)
        self.accounts = Accounts(store / "station.db", idle_s=settings.http.session_idle_s,
                                 max_s=settings.http.session_max_s)
        self.raw: asyncio.Queue[RawMessage | None] = asyncio.Queue(settings.ingest.queue_size)
        self.subscribed = asyncio.Event()
        self.metrics.views.queues["ingest"] = self.raw.qsize
        self.spool = Spool(store / "spool.db")
        self.history = SpooledWriter(
            self._history_sink(store), self.spool, self.metrics,
            batch_size=settings.influx.batch_size,
            flush_interval_s=settings.influx.flush_interval_s,
        )
        # Alarm events: written to the alarm store's outbox with their state change,
        # published from there by the relay over a connection of their own.
        self.alerts = MqttPublisher(client_args(
            settings.mqtt.url, identifier=f"{settings.mqtt.client_id}-pub",
            ca_file=settings.mqtt.ca_file, keepalive=settings.mqtt.keepalive,
        ), max_in_flight=settings.mqtt.max_in_flight, name="alerts")
        self._outbox_ready = asyncio.Event()
        self._relay_stopping = asyncio.Event()
        self._relay_stop = False
        self._relay_stuck_since: float | None = None  # monotonic
        # Dead letters: aggregated (monitor.deadletters), on their own bounded queue and
        # connection, so a flood of bad input never delays an alarm.
        self.spool.adopt("mqtt", "deadletter")  # what an earlier version spooled
        self.deadletters = SpooledWriter(
            MqttPublisher(client_args(
                settings.mqtt.url, identifier=f"{settings.mqtt.client_id}-dead",
                ca_file=settings.mqtt.ca_file, keepalive=settings.mqtt.keepalive,
            ), max_in_flight=settings.mqtt.max_in_flight, name="deadletter"),
            self.spool, self.metrics, batch_size=500, flush_interval_s=0.2, queue_size=64,
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
                    await client.subscribe([(m.subscribe, 1)]
                                           + [(topic, 1) for topic in CONTROL_SUBSCRIPTIONS])
                    log.info("subscribed to %s and control topics on %s", m.subscribe, m.url)
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
            await self.raw.put((str(msg.topic), _payload_bytes(msg.payload), self.clock()))

    async def _consume(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            await self.raw.put((str(msg.topic), _payload_bytes(msg.payload), self.clock()))

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
            try:
                out = self.processor.process(items)
            except Exception as exc:  # a bug: isolate the message, never stop watching
                out = self.processor.fail_batch(items, exc)
            await self._deliver(out)
            if last:
                return

    async def _deliver(self, out: Output) -> None:
        if out.alerts:
            self._outbox_ready.set()  # already in the outbox: wake the relay
        if out.history:
            await self.history.put(out.history)
        if out.dead:
            self.deadletters.offer(out.dead)

    async def _relay(self) -> None:
        """Publish the alarm store's outbox in order; rows are marked sent only after
        the broker acknowledged them (at least once, and at most once more after a
        crash). Unsent rows wait on disk for the broker, or for the next start."""
        store, sink, m = self.alarm_store, self.alerts, self.metrics
        backoff = 0.0
        try:
            while True:
                self._outbox_ready.clear()
                rows = store.unsent(500)
                if not rows:
                    if self._relay_stop:
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._outbox_ready.wait(), 1.0)
                    continue
                try:
                    await sink.write([[topic, payload, 1] for _, topic, payload in rows])
                except SinkError as exc:
                    if self._relay_stuck_since is None:
                        self._relay_stuck_since = time.monotonic()
                    m.failures.labels(sink.name).inc()
                    backoff = min(30.0, max(0.5, backoff * 2))
                    log.warning("alarm events not delivered (%s); %d+ wait in the outbox, "
                                "retry in %.1f s", exc, len(rows), backoff)
                    if self._relay_stop:
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._relay_stopping.wait(), backoff)
                    continue
                store.mark_sent(rows[-1][0])
                self._relay_stuck_since = None
                m.delivered.labels(sink.name).inc(len(rows))
                backoff = 0.0
        finally:
            await sink.close()

    def self_check(self) -> dict[str, float]:
        """The pipeline's own health, as the signals of the ``system.*`` alarm rules."""
        stuck = self._relay_stuck_since
        waiting = 0.0 if stuck is None else time.monotonic() - stuck
        return {
            "history": float(self.spool.depth(self.history.sink.name)),
            # seconds the relay has been failing to hand alarm events to the broker
            "mqtt": waiting,
            "ingest": self.raw.qsize() / max(1, self.raw.maxsize),
        }

    async def _clock(self, stop: asyncio.Event) -> None:
        """Escalations, snoozes, stale streams and the self-check, on the wall clock."""
        every = self.settings.alarms.tick_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            now = self.clock()
            try:
                out = self.processor.tick(now, self.self_check())
            except Exception as exc:  # a bug here must not stop ingest; it is loud instead
                self.processor.internal_error("clock", exc, now, "alarm clock tick")
                out = Output(dead=self.processor.dead.drain(now))
            await self._deliver(out)

    async def acknowledge(self, ward: str, bed: str, request: dict[str, Any]) -> str | None:
        """Acknowledge or snooze an alarm (the station page); returns an error or None."""
        now = self.clock()
        try:
            out, error = self.processor.acknowledge(ward, bed, request, now)
        except Exception as exc:
            self.processor.internal_error("ack", exc, now, f"station ack on {ward}/{bed}")
            return "internal error: the acknowledgement was not recorded; see the log"
        await self._deliver(out)
        return error

    # -- HTTP ----------------------------------------------------------------------
    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({
            "subscribed": self.subscribed.is_set(),
            "queues": {k: f() for k, f in self.metrics.views.queues.items()},
            "spool": {k: f() for k, f in self.metrics.views.spools.items()},
            "streams": len(self.processor.streams),
        })

    async def _start_http(self) -> web.AppRunner | None:
        h = self.settings.http
        if not h.port:
            return None
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        Station(self.processor, self.accounts, self.alarm_store, self.acknowledge,
                secure_cookies=h.secure_cookies).install(app)
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
        # what the configuration no longer raises (disabled rules, removed wards)
        await self._deliver(self.processor.reconcile(self.clock()))
        async with asyncio.TaskGroup() as tg:
            writers = [
                tg.create_task(self.history.run(), name="sink:history"),
                tg.create_task(self.deadletters.run(), name="sink:deadletter"),
            ]
            relay = tg.create_task(self._relay(), name="alarms:relay")
            processor = tg.create_task(self._process(), name="processor")
            halt_intake = asyncio.Event()
            clock = tg.create_task(self._clock(halt_intake), name="alarms:clock")
            source = tg.create_task(self._source(halt_intake), name="source:mqtt")
            log.info("wardwatch running; store in %s", self.settings.store.dir)
            await stop.wait()
            log.info("stopping: intake first, then flush and close the sinks")
            halt_intake.set()
            await source
            await clock
            await self.raw.put(None)
            await processor
            self.deadletters.offer(self.processor.dead.flush(self.clock()))
            self._relay_stop = True
            self._relay_stopping.set()
            self._outbox_ready.set()
            await relay
            await self.history.close()
            await self.deadletters.close()
            await asyncio.gather(*writers)
        if runner is not None:
            await runner.cleanup()
        if server is not None:
            server.shutdown()
            server.server_close()
        self.spool.close()
        self.alarm_store.close()
        self.accounts.close()
        log.info("wardwatch stopped")
