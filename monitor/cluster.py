"""One worker of a wardwatch cluster: ``wardwatch run --worker-index K --worker-of N``.

The brokers are a NATS cluster (deploy/cluster/): devices publish MQTT to any node, and
a subject mapping puts in front of every observation and control topic its partition, a
hash of (ward, bed). A replicated JetStream stream keeps them; a partition's holder reads
them in order from a position (:mod:`monitor.streamintake`).

**Who holds what.** Workers announce themselves with a retained ``online`` on
``wardwatch/v1/cluster/workers/{id}``, said again every second, and a last will
``offline`` (a killed worker's connection drops and the broker publishes its will at
once); one not heard from for WORKER_TIMEOUT_S is gone too (its will dies with its
node). Every worker computes the same assignment from the same live set
(:func:`assignment`: rendezvous hashing with bounded loads, so a worker joining or
leaving moves few partitions besides its own).

**State and fencing.** Each partition's state (:mod:`monitor.partition`) is one entry
``p{p}`` of a JetStream key-value bucket, replicated on the nodes, with its holder and an
epoch, and the stream position the state reflects. Every write is a compare-and-set on
the entry's revision. A worker takes a partition only when the entry names no holder
(released cleanly), or a holder that is not live and whose entry has not changed for
LEASE_S (a holder commits every ``checkpoint_s``: a live one whose presence is late keeps
its partitions); its first write (the claim) makes any write of the previous holder fail,
and that holder then lets the partition go (it is fenced). The next holder restores the
committed state and reads from just after its position, so every message is applied
once and in order. A sample at or before a stream's last one is an old one (see
:mod:`monitor.checkpoint`), so a message processed after the last commit and read again
by the next holder is not applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.intake import RawMessage
from monitor.metrics import Metrics, serve, stop_serving
from monitor.mqtt import all_client_args, broker_urls
from monitor.partition import Fenced, PartitionStateError, materialize
from monitor.streamintake import StreamIntake, ensure_stream, log_nats_error

log = logging.getLogger(__name__)

WORKERS_TOPIC = "wardwatch/v1/cluster/workers/"
HEARTBEAT_S = 1.0  # how often a worker says again that it is online
WORKER_TIMEOUT_S = 10.0  # a worker not heard from this long is gone
LEASE_S = 10.0  # ... and a partition it held, unchanged this long, may be taken


def _weight(partition: int, worker: str) -> int:
    h = hashlib.blake2b(f"{partition}:{worker}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big")


def assignment(partitions: int, live: set[str] | list[str]) -> dict[int, str]:
    """Which live worker holds each partition: rendezvous hashing with bounded loads.

    Each partition ranks the workers by a hash of (partition, worker) and goes to the
    first in its ranking that holds fewer than ceil(partitions / workers); so loads differ
    by at most one, and a worker joining or leaving moves few partitions besides its own.
    Every worker computes the same answer from the same live set."""
    workers = sorted(live)
    if not workers:
        return {}
    cap = -(-partitions // len(workers))
    load = dict.fromkeys(workers, 0)
    out = {}
    for p in range(partitions):
        for w in sorted(workers, key=lambda w: _weight(p, w), reverse=True):
            if load[w] < cap:
                out[p] = w
                load[w] += 1
                break
    return out


class Entry(msgspec.Struct):
    """A partition's key-value entry: who holds it, since which epoch, and its state."""

    holder: str | None
    epoch: int
    state: bytes | None
    position: int = 0  # the stream sequence of the last message the state reflects


@dataclass
class Lease:
    """A worker's hold on one partition: commits are compare-and-set on ``revision``."""

    kv: Any  # nats.js.kv.KeyValue
    js: Any  # nats.js.JetStreamContext
    partition: int
    worker: str
    epoch: int
    revision: int
    state: bytes | None
    position: int
    every_s: float

    @property
    def key(self) -> str:
        return f"p{self.partition}"

    def open_intake(self, queue: asyncio.Queue[RawMessage | None], clock: Callable[[], float],
                    metrics: Metrics, slots: int) -> StreamIntake:
        return StreamIntake(self.js, self.partition, self.position + 1, queue=queue,
                            clock=clock, metrics=metrics, slots=slots)

    async def commit(self, state: bytes | None, position: int | None, *,
                     release: bool = False) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        if state is not None:
            self.state = state
            if position is not None:
                self.position = position
        entry = Entry(None if release else self.worker, self.epoch, self.state, self.position)
        try:
            self.revision = await self.kv.update(self.key, msgspec.msgpack.encode(entry),
                                                 last=self.revision)
        except KeyWrongLastSequenceError as exc:
            raise Fenced(f"partition {self.partition} was taken over") from exc


class Presence(msgspec.Struct):
    """A worker's retained presence: ``online`` with its station's URL (its will and a
    clean stop say plain ``offline``)."""

    status: str
    station: str | None = None


@dataclass
class Held:
    daemon: Any  # monitor.daemon.Daemon
    stop: asyncio.Event
    task: asyncio.Task[None]


class _PartitionMetrics(Collector):
    """The held partitions' daemons' metrics, each sample labelled with its partition."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for p, held in sorted(self.worker.held.items()):
            for fam in held.daemon.registry.collect():
                out = merged.get(fam.name)
                if out is None:
                    out = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type,
                                                    fam.unit)
                for smp in fam.samples:
                    out.add_sample(smp.name, {**smp.labels, "partition": str(p)}, smp.value,
                                   smp.timestamp)
        yield from merged.values()


class Worker:
    """Holds the partitions the live workers' assignment gives it, one daemon each."""

    def __init__(self, settings: Settings, *, index: int, of: int,
                 registry: CollectorRegistry | None = None) -> None:
        cl = settings.cluster
        if not cl.nats:
            raise ConfigError("a cluster worker needs [cluster] nats (the NATS URLs)")
        if index < 0 or of < 1 or cl.partitions < 1:
            raise ConfigError("--worker-index must be >= 0, --worker-of and "
                              "[cluster] partitions >= 1")
        self.settings = settings
        self.cfg = cl
        self.id = f"w{index}"
        self.expected = of
        self.store = Path(settings.store.dir).expanduser()
        # the others, by when each last said it is online (monotonic); "offline" (its
        # will, or a clean stop) removes one at once, silence after WORKER_TIMEOUT_S (its
        # node went down with it, and the will with the node)
        self._seen: dict[str, float] = {}
        self._stations: dict[str, str] = {}  # worker → its station's URL (its presence)
        self.station: Any = None  # monitor.station.peers.WorkerStation, with [http] port
        self._view: set[str] = set()
        self.held: dict[int, Held] = {}
        self._changed = asyncio.Event()
        self._releasing: set[int] = set()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(_PartitionMetrics(self))
        self.m_held = Gauge("wardwatch_cluster_partitions_held",
                            "Partitions this worker holds", registry=self.registry)
        self.m_live = Gauge("wardwatch_cluster_workers_live",
                            "Workers this one sees live", registry=self.registry)
        configured = Gauge("wardwatch_cluster_partitions_configured",
                           "[cluster] partitions", registry=self.registry)
        configured.set(cl.partitions)
        self.m_taken = Counter("wardwatch_cluster_takeovers",
                               "Partitions taken (at start, after a loss or a rebalance)",
                               registry=self.registry)
        self.m_released = Counter("wardwatch_cluster_releases",
                                  "Partitions handed over cleanly", registry=self.registry)
        self.m_fenced = Counter("wardwatch_cluster_fenced",
                                "Partitions lost to another worker's claim",
                                registry=self.registry)
        self.m_errors = Counter("wardwatch_cluster_partition_errors",
                                "Partitions that could not be started, or started without "
                                "their state", registry=self.registry)
        self.kv: Any = None
        self.js: Any = None
        # a partition held by a worker not live: its entry's revision, and since when
        self._revisions: dict[int, tuple[int, float]] = {}
        self.lease_s = max(LEASE_S, 5 * cl.checkpoint_s)
        if settings.http.port:  # the station: this worker's partitions and the others'
            from monitor.station.peers import WorkerStation

            self.station = WorkerStation(
                settings, own=lambda: [h.daemon.local_source(exclusive=False)
                                       for h in self.held.values()],
                held=lambda: set(self.held), stations=self.stations, store=self.store)

    # -- membership ----------------------------------------------------------------
    @property
    def live(self) -> set[str]:
        """The other workers seen online within WORKER_TIMEOUT_S."""
        now = time.monotonic()
        return {w for w, at in self._seen.items() if now - at < WORKER_TIMEOUT_S}

    async def _membership(self, ready: asyncio.Event) -> None:
        m = self.settings.mqtt
        me = WORKERS_TOPIC + self.id
        nodes = all_client_args(m.url, identifier=f"ww-worker-{self.id}",
                                keepalive=m.keepalive, **m.tls_files())
        attempt = 0
        while True:
            args = nodes[attempt % len(nodes)]
            attempt += 1
            args["will"] = aiomqtt.Will(me, b"offline", qos=1, retain=True)
            beat: asyncio.Task[None] | None = None
            try:
                async with aiomqtt.Client(**args) as client:
                    await client.subscribe(WORKERS_TOPIC + "+", qos=1)
                    online = msgspec.json.encode(Presence(
                        "online", self.station.url if self.station is not None else None))
                    await client.publish(me, online, qos=1, retain=True)
                    # said again every HEARTBEAT_S: the others time a silent worker out,
                    # and a retained message reaches a subscriber on another node only
                    # once that node has it, which can take a moment
                    beat = asyncio.create_task(self._heartbeat(client, me, online))
                    ready.set()
                    async for msg in client.messages:
                        self._presence(str(msg.topic)[len(WORKERS_TOPIC):],
                                       bytes(msg.payload))
            except aiomqtt.MqttError as exc:
                log.warning("cluster membership connection to %s:%s lost (%s); trying the "
                            "next node", args["hostname"], args["port"], exc)
                await asyncio.sleep(1.0)
            finally:
                if beat is not None:
                    beat.cancel()

    def _presence(self, worker: str, payload: bytes) -> None:
        if worker == self.id:
            return  # itself: live while it runs (a will of its own, after a blip, is old)
        try:
            said = msgspec.json.decode(payload, type=Presence)
        except msgspec.DecodeError:  # "offline" (a will), or not one of ours
            said = Presence(payload.strip().decode(errors="replace"))
        if said.status == "online":
            self._seen[worker] = time.monotonic()
            if said.station:
                self._stations[worker] = said.station
        else:
            self._seen.pop(worker, None)
        self._look()

    def stations(self) -> dict[str, str]:
        """The station URLs of the other live workers."""
        live = self.live
        return {w: url for w, url in self._stations.items() if w in live}

    def _look(self) -> None:
        """Note a change of the live set (an arrival, a departure or a time-out)."""
        view = self.live | {self.id}
        if view != self._view:
            self._view = view
            log.info("workers live: %s", ", ".join(sorted(view)))
            self.m_live.set(len(view))
            self._changed.set()

    @staticmethod
    async def _heartbeat(client: aiomqtt.Client, me: str, online: bytes) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            while True:
                await asyncio.sleep(HEARTBEAT_S)
                await client.publish(me, online, qos=1, retain=True)

    async def _leave(self) -> None:
        m = self.settings.mqtt
        for args in all_client_args(m.url, identifier=f"ww-worker-{self.id}-bye",
                                    keepalive=m.keepalive, **m.tls_files()):
            with contextlib.suppress(aiomqtt.MqttError):
                async with aiomqtt.Client(**args) as client:
                    await client.publish(WORKERS_TOPIC + self.id, b"offline", qos=1,
                                         retain=True)
                return

    # -- partitions ----------------------------------------------------------------
    def mine(self) -> set[int]:
        held = assignment(self.cfg.partitions, self.live | {self.id})
        return {p for p, w in held.items() if w == self.id}

    async def _acquire(self, p: int) -> bool:
        """Take partition ``p`` if nobody live holds it; False: not now."""
        from nats.js.errors import KeyNotFoundError

        from monitor.daemon import Daemon

        key = f"p{p}"
        try:
            try:
                got = await self.kv.get(key)
            except KeyNotFoundError:
                got = None
            if got is None or not got.value:
                epoch, state, position = 1, None, 0
                rev = await self.kv.create(key, msgspec.msgpack.encode(Entry(self.id, 1, None)))
            else:
                entry = msgspec.msgpack.decode(got.value, type=Entry)
                if entry.holder not in (None, self.id) and not self._lapsed(p, entry.holder,
                                                                            got.revision):
                    return False  # still held: being handed over, or its holder commits
                epoch, state, position = entry.epoch + 1, entry.state, entry.position
                rev = await self.kv.update(
                    key, msgspec.msgpack.encode(Entry(self.id, epoch, state, position)),
                    last=got.revision)
        except Exception as exc:  # raced (KeyWrongLastSequenceError), or the store is away
            log.info("partition %d not taken now: %s", p, exc)
            return False
        self._revisions.pop(p, None)
        store = self.store / f"p{p}-e{epoch}"
        counts: dict[str, int] = {}
        try:
            counts = materialize(state, store) if state else {}
        except PartitionStateError as exc:  # watched afresh rather than not at all
            log.error("partition %d: its committed state cannot be used (%s): its beds' "
                      "models start afresh", p, exc)
            self.m_errors.inc()
        lease = Lease(self.kv, self.js, p, self.id, epoch, rev, state, position,
                      self.cfg.checkpoint_s)
        s = self.settings
        settings = replace(
            s, mqtt=replace(s.mqtt, client_id=f"ww-part-{p}"),
            store=replace(s.store, dir=str(store)), http=replace(s.http, port=0),
            metrics=replace(s.metrics, port=0))
        daemon = Daemon(settings, registry=CollectorRegistry(), lease=lease)
        stop = asyncio.Event()
        task = asyncio.create_task(self._run_partition(p, daemon, stop), name=f"partition:{p}")
        self.held[p] = Held(daemon, stop, task)
        self.m_held.set(len(self.held))
        self.m_taken.inc()
        log.info("partition %d taken (epoch %d, from position %d; restored %s)", p, epoch,
                 position, counts or "nothing")
        return True

    def _lapsed(self, p: int, holder: str, revision: int) -> bool:
        """Whether ``holder`` has let partition ``p`` lapse: it is not live, and the
        partition's entry has not changed for ``lease_s`` (a live holder commits every
        ``checkpoint_s``). Both, so that a worker whose presence is late (its broker node
        lost, an election under way) keeps what it is still committing."""
        if holder in self.live:
            self._revisions.pop(p, None)
            return False
        now = time.monotonic()
        seen, since = self._revisions.get(p, (None, now))
        if seen != revision:
            self._revisions[p] = (revision, now)
            return False
        return now - since >= self.lease_s

    async def _run_partition(self, p: int, daemon: Any, stop: asyncio.Event) -> None:
        try:
            await daemon.run(stop)
        except Exception:
            log.exception("partition %d stopped on an error; it will be taken again", p)
        finally:
            self.held.pop(p, None)
            self.m_held.set(len(self.held))
            if daemon.fenced:
                self.m_fenced.inc()
            self._changed.set()

    async def _release(self, p: int) -> None:
        held = self.held.get(p)
        if held is None:
            return
        self._releasing.add(p)
        try:
            held.stop.set()
            await held.task
            if not held.daemon.fenced:
                self.m_released.inc()
                log.info("partition %d handed over", p)
        finally:
            self._releasing.discard(p)

    async def _rebalance(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._look()
            mine = self.mine()
            for p in sorted(set(self.held) - mine - self._releasing):
                asyncio.create_task(self._release(p), name=f"release:{p}")  # noqa: RUF006
            for p in sorted(mine - set(self.held)):
                if stop.is_set():
                    break
                try:
                    await self._acquire(p)
                except Exception:  # a bug, or a store that cannot be written: again soon
                    log.exception("partition %d could not be started; trying again", p)
                    self.m_errors.inc()
            self._changed.clear()
            pending = mine - set(self.held)
            with contextlib.suppress(TimeoutError):
                # waiting for a hand-over: look again soon; else on the next change
                await asyncio.wait_for(self._changed.wait(), 0.5 if pending else HEARTBEAT_S)

    # -- lifecycle -----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        import nats
        from nats.js.api import KeyValueConfig

        from monitor.scoring.multivariate import RIVER

        ms = self.settings.metrics
        server = serve(ms.host, ms.port, self.registry)
        # the per-bed detector's library, at full speed beside the broker's set-up (a
        # worker starts before its partitions come: nothing is watched meanwhile)
        river = asyncio.create_task(asyncio.to_thread(RIVER.load, spread=False))
        nc = await nats.connect(servers=broker_urls(self.cfg.nats),
                                name=f"wardwatch-{self.id}", max_reconnect_attempts=-1,
                                error_cb=log_nats_error)
        try:
            js = self.js = nc.jetstream()
            await ensure_stream(js, replicas=self.cfg.replicas,
                                retention_s=self.cfg.retention_s)
            self.kv = await js.create_key_value(KeyValueConfig(
                bucket=self.cfg.bucket, history=1, replicas=self.cfg.replicas,
                description="wardwatch partition states (monitor/cluster.py)"))
            await river
            # what start-up loaded (modules, compiled kernels) is never garbage: out of the
            # collector's full passes, which otherwise walk it all and stall every partition
            # (as the single daemon does: monitor.daemon)
            gc.collect()
            gc.freeze()
            if self.station is not None:
                await self.station.start()
            ready = asyncio.Event()
            membership = asyncio.create_task(self._membership(ready), name="membership")
            await ready.wait()
            deadline = time.monotonic() + self.cfg.settle_s
            # the others' retained presence, or their start
            while len(self.live | {self.id}) < self.expected and time.monotonic() < deadline:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
            log.info("worker %s: %d partitions, workers live: %s", self.id,
                     self.cfg.partitions, ", ".join(sorted(self.live | {self.id})))
            rebalance = asyncio.create_task(self._rebalance(stop), name="rebalance")
            await stop.wait()
            log.info("worker %s stopping: handing over %d partitions", self.id,
                     len(self.held))
            if self.station is not None:
                self.station.closing()
            await rebalance
            await asyncio.gather(*(self._release(p) for p in list(self.held)))
            membership.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await membership
            await self._leave()
        finally:
            if self.station is not None:
                await self.station.stop()
            await nc.close()
            stop_serving(server)
        log.info("worker %s stopped", self.id)
