"""A cluster partition's intake: its messages, in order, from a JetStream stream.

Devices publish MQTT to any node of the NATS cluster. The nodes' subject mapping
(deploy/cluster/cluster.py) rewrites each observation and control topic into a subject
that starts with its partition::

    wardwatch/v1/obs/4A/12   ->  wardwatch.part.5.obs.4A.12

and the stream ``WARDWATCH_IN`` (replicated on the nodes) keeps every such message for
``[cluster] retention_s``. A partition's holder reads ``wardwatch.part.{p}.>`` with an
ordered consumer from a stream sequence on. Nothing is acknowledged: the position is
the holder's, committed with the partition's state (:mod:`monitor.cluster`), so the next
holder starts exactly after the last message the committed state reflects, and reads
every later one in the order the cluster received them.

Memory stays bounded the same way as the MQTT intake's: ``slots`` messages at most wait
for the processor; the consumer then waits, and the stream holds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from monitor.intake import RawMessage, Token
from monitor.metrics import Metrics

log = logging.getLogger(__name__)

STREAM = "WARDWATCH_IN"
IDLE_CHECK_S = 5.0  # a partition quiet this long: is its consumer still there?
SUBJECTS = "wardwatch.part.>"


def subject_topic(subject: str) -> str:
    """``wardwatch.part.{p}.{kind}.{ward}.{bed}[.{client}]`` → the wire topic."""
    parts = subject.split(".")
    return "wardwatch/v1/" + "/".join(parts[3:])


async def log_nats_error(exc: Exception) -> None:
    """nats-py's ``error_cb``: a lost node in one line (its default logs a traceback)."""
    log.warning("NATS connection: %s", exc or type(exc).__name__)


async def ensure_stream(js: Any, *, replicas: int, retention_s: float) -> None:
    """Create the intake stream if it is not there yet (any worker may; the first does)."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import BadRequestError, NotFoundError

    try:
        await js.stream_info(STREAM)
        return
    except NotFoundError:
        pass
    config = StreamConfig(
        name=STREAM, subjects=[SUBJECTS], retention=RetentionPolicy.LIMITS,
        max_age=retention_s, storage=StorageType.FILE, num_replicas=replicas,
        discard=DiscardPolicy.OLD,
        description="wardwatch observations and control messages by partition")
    with contextlib.suppress(BadRequestError):  # another worker made it meanwhile
        await js.add_stream(config)


class StreamIntake:
    """Messages of one partition from sequence ``start`` on, into ``queue``."""

    def __init__(self, js: Any, partition: int, start: int, *,
                 queue: asyncio.Queue[RawMessage | None], clock: Callable[[], float],
                 metrics: Metrics, slots: int = 10_000) -> None:
        self.js = js
        self.partition = partition
        self.start_seq = start
        self.queue = queue
        self.clock = clock
        self.metrics = metrics
        self.subscribed = asyncio.Event()
        self._slots = asyncio.Semaphore(slots)
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._closing = False
        # messages whose results are durable (history journalled, events in the outbox):
        # the partition's next commit may put its position after them
        self.durable: list[Token] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"intake:{self.partition}")

    async def _run(self) -> None:
        from nats.js.api import DeliverPolicy

        subject = f"wardwatch.part.{self.partition}.>"
        while not self._closing:
            try:
                # from sequence 1 is from the first the stream still holds
                sub = await self.js.subscribe(
                    subject, stream=STREAM, ordered_consumer=True,
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    config=_start_at(max(1, self.start_seq)), pending_msgs_limit=20_000)
            except Exception as exc:  # the cluster is away: try again
                log.warning("partition %d: cannot read %s (%s); retrying", self.partition,
                            STREAM, exc)
                await asyncio.sleep(1.0)
                continue
            self._sub = sub
            log.info("partition %d: reading %s from sequence %d", self.partition, subject,
                     max(1, self.start_seq))
            self.subscribed.set()
            try:
                await self._read(sub)
            except Exception as exc:
                if self._closing:
                    return
                log.warning("partition %d: consumer lost (%s); resuming at %d",
                            self.partition, exc, self.start_seq)
                self.metrics.reconnects.labels("ingest").inc()
            self.subscribed.clear()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            await asyncio.sleep(0.5)

    async def _read(self, sub: Any) -> None:
        """Hand over messages until the consumer is gone or the intake closes. A consumer
        lost with its node is not reported to the client (the messages just stop): after
        IDLE_CHECK_S without one, the server is asked whether it still exists."""
        heard = time.monotonic()

        async def pump() -> None:
            nonlocal heard
            async for msg in sub.messages:
                heard = time.monotonic()
                await self._slots.acquire()
                if self._closing:
                    return
                seq = msg.metadata.sequence.stream
                self.start_seq = seq + 1  # where a new consumer would go on
                self.queue.put_nowait((subject_topic(msg.subject), msg.data, self.clock(),
                                       Token(seq, 1, 0)))

        async def watch() -> None:
            while True:
                await asyncio.sleep(IDLE_CHECK_S)
                if time.monotonic() - heard >= IDLE_CHECK_S:
                    await sub.consumer_info()  # raises when the consumer no longer exists

        tasks = {asyncio.create_task(pump()), asyncio.create_task(watch())}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # the consumer's end, as an exception

    def taken(self) -> None:
        self._slots.release()

    def ack(self, tokens: list[Token]) -> None:
        """As the MQTT intake's: these messages' results are durable. A stream has no
        per-message acknowledgement; the partition's commit records the position."""
        self.durable.extend(tokens)

    def pause(self) -> None:
        self._closing = True
        self._slots.release()

    async def aclose(self) -> None:
        self._closing = True
        self._slots.release()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()


def _start_at(seq: int) -> Any:
    from nats.js.api import ConsumerConfig, DeliverPolicy

    return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq)
