"""The daemon: MQTT in → processor → sinks, joined by bounded queues.

Wiring goes from the sinks back to the source, and the source starts last. Stopping
drains downstream: the source stops taking messages, the processor empties its queue,
each sink delivers or spools what it holds, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from monitor.alarmstore import AlarmStore
from monitor.checkpoint import Checkpointer, ModelStore
from monitor.clock import SteadyClock
from monitor.config import Settings
from monitor.errors import ConfigError, SinkError
from monitor.intake import Intake, RawMessage
from monitor.lifecycle import AlarmEngine
from monitor.metrics import Metrics, serve, stop_serving
from monitor.mqtt import RECONNECT_MAX_S, all_client_args, broker_urls
from monitor.pipeline import Output, Processor
from monitor.pseudonym import Pseudonymizer
from monitor.retry import Retry
from monitor.ruleset import RuleSet
from monitor.scoring.multivariate import RIVER
from monitor.sinks import InfluxV1Sink, InfluxV2Sink, MqttPublisher, SqliteHistorySink
from monitor.spool import Sink, Spool, SpooledWriter
from monitor.station.auth import Accounts
from monitor.station.source import Local
from monitor.station.web import Station
from monitor.systemd import Notifier
from monitor.wire import CONTROL_SUBSCRIPTIONS

log = logging.getLogger(__name__)

LINGER_S = 0.003  # a partition daemon's wait for a batch to fill (monitor.streamintake)


class PartitionLease(Protocol):
    """A cluster worker's hold on one partition (monitor/cluster.py)."""

    partition: int
    every_s: float  # how often the partition's state is committed

    def open_intake(self, queue: asyncio.Queue[RawMessage | None], clock: Callable[[], float],
                    metrics: Metrics, slots: int) -> Any:
        """The partition's messages from just after the committed position on."""

    async def commit(self, state: bytes | None, position: int | None, *,
                     release: bool = False) -> None:
        """Store ``state`` and the stream ``position`` it reflects (None: keep the last)
        as the partition's; raises :class:`monitor.partition.Fenced` when another worker
        holds it now."""


class Daemon:
    """One wardwatch process. ``await Daemon(settings).run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None,
                 clock: SteadyClock | None = None, own_process: bool = False,
                 lease: PartitionLease | None = None) -> None:
        self.settings = settings
        # In a cluster, one daemon per partition held: it reads that partition's stream,
        # and commits the partition's state with the position it reflects (once the
        # alarm events before it are published), so the next holder resumes from that
        # state and position.
        self.lease = lease
        # ``wardwatch run``: the process is the daemon's, so it tunes the interpreter
        # (garbage collector, GIL switch interval) for it; embedded (tests, the demo), not
        self.own_process = own_process
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
        pseudonym = (Pseudonymizer.from_file(settings.pseudonym.key_file)
                     if settings.pseudonym.key_file else None)
        self.processor = Processor(self.metrics, settings.ingest.limits(), engine,
                                   trend_hours=settings.http.trend_hours,
                                   trusted_clients=settings.acks.trusted_clients,
                                   pseudonym=pseudonym, river=RIVER)
        # the models' state: restored now, written every checkpoint_s and at a clean stop
        # (a cluster partition's: restored from the state its worker wrote there, and
        # committed by the partition's Committer instead)
        self.models: ModelStore | None = None
        self.checkpointer = Checkpointer(self.processor.streams, self._model_blobs)
        if settings.store.checkpoint_s > 0 or lease is not None:
            self.models = ModelStore(store / "models.db")
            n = self.models.restore(self.processor.streams, self.checkpointer)
            beds = self.models.blob("beds")
            if beds is not None:
                self.processor.restore_beds(beds)
            if n:
                log.info("models of %d streams restored from %s", n, self.models.path)
            # restored streams count as heard from now: one whose device never speaks
            # again goes stale after its limit, instead of never being judged stale
            self.processor.streams.wall_seen[:len(self.processor.streams)] = self.clock()
        self._next_checkpoint = time.monotonic() + settings.store.checkpoint_s
        self.accounts = Accounts(store / "station.db", idle_s=settings.http.session_idle_s,
                                 max_s=settings.http.session_max_s)
        # the intake's slots bound this queue: a full queue stops paho reading the socket
        self.raw: asyncio.Queue[RawMessage | None] = asyncio.Queue()
        m = settings.mqtt
        if lease is None and len(broker_urls(m.url)) > 1:
            raise ConfigError("[mqtt] url names several brokers: only a cluster worker "
                              "(run --worker-index) can use more than one")
        self.intake: Any
        if lease is None:
            self.intake = Intake(broker_urls(m.url)[0], client_id=m.client_id,
                                 subscriptions=[m.subscribe, *CONTROL_SUBSCRIPTIONS],
                                 queue=self.raw, clock=self.clock, metrics=self.metrics,
                                 tls_files=m.tls_files(), keepalive=m.keepalive,
                                 slots=settings.ingest.queue_size)
        else:  # the partition's stream, from the committed position on (monitor.cluster)
            self.intake = lease.open_intake(self.raw, self.clock, self.metrics,
                                            settings.ingest.queue_size)
        self.subscribed = self.intake.subscribed
        self.metrics.views.queues["ingest"] = self.raw.qsize
        self.spool = Spool(store / "spool.db")
        self.history = SpooledWriter(
            self._history_sink(store), self.spool, self.metrics,
            batch_size=settings.influx.batch_size,
            flush_interval_s=settings.influx.flush_interval_s,
            journal=True,  # durable before the broker gets its acknowledgement
        )
        # Alarm events: written to the alarm store's outbox with their state change,
        # published from there by the relay over a connection of their own.
        self.alerts = MqttPublisher(all_client_args(
            settings.mqtt.url, identifier=f"{settings.mqtt.client_id}-pub",
            keepalive=settings.mqtt.keepalive, **settings.mqtt.tls_files(),
        ), max_in_flight=settings.mqtt.max_in_flight, name="alerts")
        self._outbox_ready = asyncio.Event()
        self._relay_stopping = asyncio.Event()
        self._relay_retry = Retry(most=RECONNECT_MAX_S)  # and since when it fails
        self.relay_done = False
        if lease is not None:
            from monitor.partition import Committer

            self.committer = Committer(self, lease)
        self.metrics.views.stuck["alerts"] = self._relay_retry.down_s
        # Dead letters: aggregated (monitor.deadletters), on their own bounded queue and
        # connection, so a flood of bad input never delays an alarm.
        self.spool.adopt("mqtt", "deadletter")  # what an earlier version spooled
        self.deadletters = SpooledWriter(
            MqttPublisher(all_client_args(
                settings.mqtt.url, identifier=f"{settings.mqtt.client_id}-dead",
                keepalive=settings.mqtt.keepalive, **settings.mqtt.tls_files(),
            ), max_in_flight=settings.mqtt.max_in_flight, name="deadletter"),
            self.spool, self.metrics, batch_size=500, flush_interval_s=0.2, queue_size=64,
        )
        self.metrics_port: int | None = None
        self.http_port: int | None = None
        self.station: Station | None = None
        self.notifier = Notifier()  # systemd's READY / WATCHDOG / STOPPING; no-op elsewhere
        self._progress = time.monotonic()  # when the processor last finished a batch

    def _history_sink(self, store: Path) -> Sink:
        inf = self.settings.influx
        if not inf.url:
            return SqliteHistorySink(store / "history.db")
        if inf.api == "v2":
            return InfluxV2Sink(inf.url, token=inf.token, org=inf.org, bucket=inf.bucket)
        return InfluxV1Sink(inf.url, inf.database, retention_policy=inf.retention_policy,
                            username=inf.username, password=inf.password)

    # -- stages ------------------------------------------------------------------
    async def _process(self) -> None:
        """Micro-batches off the intake queue; each batch's messages are acknowledged to
        the broker once what they produced is durable."""
        batch_max = self.settings.ingest.batch_max
        taken = self.intake.taken
        # A cluster partition's intake hands over one message per turn of the loop: wait
        # a moment for more, or each message would be a batch of its own (~1 ms each)
        linger = LINGER_S if self.lease is not None else 0.0
        while True:
            item = await self.raw.get()
            if item is None:
                return
            taken()
            items = [item]
            if linger and self.raw.qsize() < batch_max:
                await asyncio.sleep(linger)
            last = False
            while len(items) < batch_max:
                try:
                    nxt = self.raw.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    last = True
                    break
                taken()
                items.append(nxt)
            messages = [(topic, payload, now) for topic, payload, now, _ in items]
            try:
                out = self.processor.process(messages)
            except Exception as exc:  # a bug: isolate the message, never stop watching
                out = self.processor.fail_batch(messages, exc)
            tokens = [tok for *_, tok in items]
            await self._deliver(out, functools.partial(self.intake.ack, tokens))
            self._progress = time.monotonic()
            if last:
                return

    async def _deliver(self, out: Output, on_durable: Callable[[], None] | None = None,
                       ) -> None:
        """Alarm events are in the outbox already; history goes to its journal, and
        ``on_durable`` runs once it is there (at once, normally)."""
        if out.alerts:
            self._outbox_ready.set()  # wake the relay
        if out.dead:
            self.deadletters.offer(out.dead)
        await self.history.put(out.history, on_durable)

    async def _relay(self) -> None:
        """Publish the alarm store's outbox in order; rows are marked sent only after
        the broker acknowledged them (at least once, and at most once more after a
        crash). Unsent rows wait on disk for the broker, or for the next start."""
        store, sink, m = self.alarm_store, self.alerts, self.metrics
        retry = self._relay_retry
        try:
            while True:
                self._outbox_ready.clear()
                rows = store.unsent(500)
                if not rows:
                    if self._relay_stopping.is_set():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._outbox_ready.wait(), 1.0)
                    continue
                try:
                    await sink.write([[topic, payload, 1] for _, topic, payload in rows])
                except Exception as exc:  # SinkError, or a bug: the rows stay in the outbox
                    if not isinstance(exc, SinkError):
                        m.internal_errors.labels("relay").inc()
                        log.exception("alarm relay: unexpected error")
                    m.failures.labels(sink.name).inc()
                    unlogged = retry.failed()
                    if unlogged is not None:
                        log.warning("alarm events not delivered (%s); %d+ wait in the outbox, "
                                    "retry in %.1f s%s", exc, len(rows), retry.wait,
                                    Retry.since(unlogged))
                    if self._relay_stopping.is_set():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._relay_stopping.wait(), retry.wait)
                    continue
                store.mark_sent(rows[-1][0])
                m.delivered.labels(sink.name).inc(len(rows))
                if (down := retry.succeeded()) is not None:
                    log.warning("alarm events delivered again after %.1f s", down)
        finally:
            self.relay_done = True
            await sink.close()

    @property
    def fenced(self) -> bool:
        """Another worker took this daemon's partition (a cluster's)."""
        return self.lease is not None and self.committer.fenced

    def wake_relay(self) -> None:
        self._outbox_ready.set()

    def self_check(self) -> dict[str, float]:
        """The pipeline's own health, as the signals of the ``system.*`` alarm rules."""
        return {
            # seconds the history sink has been failing (its journal fills meanwhile)
            "history": self.history.stuck_seconds(),
            # seconds the relay has been failing to hand alarm events to the broker
            "mqtt": self._relay_retry.down_s(),
            "ingest": self.raw.qsize() / max(1, self.settings.ingest.queue_size),
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
            if self.models is not None and self.lease is None \
                    and time.monotonic() >= self._next_checkpoint:
                self._next_checkpoint = time.monotonic() + self.settings.store.checkpoint_s
                await self._checkpoint()
            if self._healthy():
                self.notifier.watchdog()

    def _model_blobs(self) -> dict[str, bytes]:
        return {"beds": self.processor.beds.checkpoint()}

    async def _checkpoint(self, *, final: bool = False) -> None:
        """The streams that moved, copied here between batches, written in a thread."""
        assert self.models is not None
        try:
            snap = self.checkpointer.take(final=final)
            if snap is not None:
                await asyncio.to_thread(self.models.write, snap)
        except Exception as exc:  # a lost checkpoint costs re-learning, never data
            self.processor.internal_error("checkpoint", exc, self.clock(), "model checkpoint")

    def _healthy(self) -> bool:
        """For systemd's watchdog: the clock ticks (this runs on the event loop) and the
        processor keeps up: its queue is empty, or it finished a batch within the
        watchdog's timeout. A wedged pipeline stops the pings and systemd restarts it."""
        limit = 2 * self.notifier.watchdog_s or 60.0
        return self.raw.empty() or time.monotonic() - self._progress < limit

    async def acknowledge(self, ward: str, bed: str, request: dict[str, Any]) -> str | None:
        """Acknowledge or snooze an alarm (the station page); returns an error or None."""
        now = self.clock()
        try:
            out, error = self.processor.acknowledge(ward, bed, request, now)
        except Exception as exc:
            self.processor.internal_error("ack", exc, now, f"station ack on {ward}/{bed}")
            return "internal error: the acknowledgement was not recorded; see the log"
        await self._deliver(out)
        if self.lease is not None and error is None:
            # a partition's state is its only record of the ack (it did not come through
            # the stream, as one over MQTT does): committed before the nurse is told
            await self.committer.commit()
        return error

    # -- HTTP ----------------------------------------------------------------------
    def local_source(self, *, exclusive: bool = True) -> Local:
        """What the station shows of this daemon's beds (``exclusive``: the only daemon)."""
        return Local(self.processor, self.alarm_store, self.acknowledge,
                     frozenset(self.settings.http.mmol_wards), exclusive=exclusive)

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
        a = self.settings.alarms
        self.station = Station(self.local_source(), self.accounts,
                               secure_cookies=h.secure_cookies,
                               snooze_default_s=a.snooze_default_s, snooze_max_s=a.snooze_max_s)
        self.station.install(app)
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
        server = serve(ms.host, ms.port, self.registry)
        self.metrics_port = ms.port or None
        started = time.perf_counter()
        self.processor.scorer.warm_up()  # before subscribing: no stall on the first data
        log.info("scoring kernels ready in %.1f s: %s", time.perf_counter() - started,
                 self.processor.scorer.kernels.source)
        switch = sys.getswitchinterval()
        if self.own_process:
            # what start-up loaded (modules, compiled kernels) is never garbage: keep it
            # out of the collector's full passes, which otherwise walk it all and stall
            # the loop; paho's network thread reads the socket and acknowledges, and with
            # the default 5 ms GIL switch interval it waits behind each stretch of
            # processing, and every alarm with it (publish->alarm p99 ~150-250 ms at
            # 2,000 msg/s here, ~105 ms at 1 ms: benchmarks/e2e.py)
            gc.collect()
            gc.freeze()
            sys.setswitchinterval(0.001)
        try:
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
                commits = (None if self.lease is None else tg.create_task(
                    self.committer.run(halt_intake, stop), name="partition:commits"))
                self.intake.start()
                # the bed detector's library (~1.2 s to import): beside the watching, not
                # before it; its vectors wait meanwhile (monitor.scoring.multivariate)
                # (in the daemon's own process, frozen out of the collector's view after,
                # as what the start loaded is)
                RIVER.freeze = self.own_process
                RIVER.start()
                log.info("wardwatch running; store in %s", self.settings.store.dir)
                self.notifier.ready("watching")
                await stop.wait()
                log.info("stopping: intake first, then flush and close the sinks")
                self.notifier.stopping()
                if self.station is not None:
                    self.station.close()  # open pages show "stopping" at once
                halt_intake.set()
                self.intake.pause()
                await clock
                if commits is not None:
                    await commits
                await self.raw.put(None)
                await processor
                if self.models is not None and self.lease is None:
                    await self._checkpoint(final=True)
                self.deadletters.offer(self.processor.dead.flush(self.clock()))
                self._relay_stopping.set()
                self._outbox_ready.set()
                await relay
                await self.history.close()
                if self.lease is not None:  # every batch journalled, the relay done
                    await self.committer.commit(release=True)
                await self.deadletters.close()
                await asyncio.gather(*writers)
                # after the last acknowledgement is queued: paho writes it before DISCONNECT
                await self.intake.aclose()
            if runner is not None:
                await runner.cleanup()
            stop_serving(server)
            self.spool.close()
            if self.models is not None:
                self.models.close()
            self.alarm_store.close()
            self.accounts.close()
            self.notifier.close()
            log.info("wardwatch stopped")
        finally:
            if self.own_process:
                gc.unfreeze()
                sys.setswitchinterval(switch)
