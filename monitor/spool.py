"""The on-disk outbox: batches a sink could not deliver wait here, in order, in SQLite.

:class:`SpooledWriter` sits in front of every sink (like Telegraf's running output):
it batches records, delivers them, and spools whatever the sink refuses. While a sink
has spooled batches, new batches are spooled behind them, so delivery order is kept.
A batch the sink rejects for good (a 4xx that retrying cannot fix) is kept in the
``rejected`` table, counted and logged — never dropped silently.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from monitor.errors import SinkError, SpoolError
from monitor.metrics import Metrics
from monitor.retry import Retry
from monitor.sqlitedb import connect

log = logging.getLogger(__name__)

Record = Any  # JSON-serialisable: tuples/lists, dicts, str, numbers


_SCHEMA = "".join(
    f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " sink TEXT NOT NULL, created REAL NOT NULL, n INTEGER NOT NULL, body BLOB NOT NULL,"
    " error TEXT);"
    for table in ("spool", "rejected")
)


class Sink(Protocol):
    """Where records go. ``write`` raises :class:`SinkError` when it cannot deliver.

    ``close`` is not called until every ``write`` has returned.
    """

    name: str

    async def write(self, records: Sequence[Record]) -> None: ...

    async def close(self) -> None: ...


class PermanentSinkError(SinkError):
    """The sink refused the batch itself; retrying the same batch cannot succeed."""


class Spool:
    """A FIFO of record batches per sink, in one SQLite file (WAL, synchronous=NORMAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = connect(self.path, what="spool", schema=_SCHEMA, autocommit=True,
                           pragmas=("synchronous=NORMAL",), error=SpoolError)
        self._depth: dict[str, int] = dict(
            self._db.execute("SELECT sink, SUM(n) FROM spool GROUP BY sink").fetchall()
        )

    def push(self, sink: str, records: Sequence[Record], table: str = "spool",
             error: str | None = None) -> None:
        body = orjson.dumps(list(records), option=orjson.OPT_SERIALIZE_NUMPY)
        try:
            self._db.execute(
                f"INSERT INTO {table} (sink, created, n, body, error) VALUES (?, ?, ?, ?, ?)",
                (sink, time.time(), len(records), body, error),
            )
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot write spool {self.path}: {exc}") from exc
        if table == "spool":
            self._depth[sink] = self._depth.get(sink, 0) + len(records)

    def peek_many(self, sink: str, max_records: int) -> tuple[int, list[Record]] | None:
        """The oldest spooled batches of ``sink``, joined up to about ``max_records``:
        (id of the last batch taken, records), or None."""
        rows = self._db.execute(
            "SELECT id, n, body FROM spool WHERE sink = ? ORDER BY id LIMIT 1000", (sink,))
        last: int | None = None
        records: list[Record] = []
        for batch_id, n, body in rows:
            if records and len(records) + int(n) > max_records:
                break
            last = int(batch_id)
            records.extend(orjson.loads(body))
        return None if last is None else (last, records)

    def delete_upto(self, sink: str, batch_id: int) -> None:
        """Forget every batch of ``sink`` up to and including ``batch_id`` (delivered)."""
        try:
            n = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM spool WHERE sink = ? AND id <= ?",
                                 (sink, batch_id)).fetchone()[0]
            self._db.execute("DELETE FROM spool WHERE sink = ? AND id <= ?", (sink, batch_id))
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot update spool {self.path}: {exc}") from exc
        self._depth[sink] = self._depth.get(sink, 0) - int(n)

    def adopt(self, old: str, new: str) -> None:
        """Hand batches spooled under an old sink name to the sink that now sends them."""
        n = self._depth.pop(old, 0)
        if n:
            self._db.execute("UPDATE spool SET sink = ? WHERE sink = ?", (new, old))
            self._depth[new] = self._depth.get(new, 0) + n
            log.info("spool: %d records of %r are now sent by %r", n, old, new)

    def depth(self, sink: str) -> int:
        """Records (not batches) waiting for ``sink``."""
        return self._depth.get(sink, 0)

    def rejected(self, sink: str) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM rejected WHERE sink = ?", (sink,))
        return int(row.fetchone()[0])

    def close(self) -> None:
        self._db.close()


class SpooledWriter:
    """Batches records for one sink, delivers them, and spools what it cannot deliver.

    With ``journal`` every batch goes to the spool first, synchronously, and is
    delivered from there: once :meth:`put` has returned (and its ``on_durable`` has
    been called) the records survive a crash of the process. The daemon acknowledges
    MQTT messages to the broker only then.
    """

    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        metrics: Metrics,
        *,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        queue_size: int = 1000,
        max_backoff_s: float = 30.0,
        journal: bool = False,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.metrics = metrics
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.journal = journal
        self.queue: asyncio.Queue[list[Record] | None] = asyncio.Queue(queue_size)
        self._retry_at = 0.0
        self._retry = Retry(most=max_backoff_s)
        self._closing = False
        self._wake = asyncio.Event()
        # batches the spool could not take (disk full, I/O error): kept in order, in
        # memory, ahead of the spool, until it can; with the callback that says durable
        self._overflow: collections.deque[tuple[list[Record], Callable[[], None] | None]] = (
            collections.deque())
        self._errors = metrics.internal_errors.labels(f"sink:{sink.name}")
        metrics.views.queues[f"sink:{sink.name}"] = self.queue.qsize
        metrics.views.spools[sink.name] = lambda: spool.depth(sink.name)
        metrics.views.stuck[sink.name] = self.stuck_seconds

    def stuck_seconds(self) -> float:
        """How long the sink has been failing (0: delivering)."""
        return self._retry.down_s()

    async def put(self, records: list[Record],
                  on_durable: Callable[[], None] | None = None) -> None:
        """Queue records for delivery; waits while the queue is full (back-pressure).

        In journal mode the records are in the spool when this returns, and
        ``on_durable`` has been called (later, if the spool cannot take them now).
        """
        if self.journal:
            self._to_spool(records, on_durable)
            if self.spool.depth(self.sink.name) >= self.batch_size:
                self._wake.set()
            return
        if records:
            await self.queue.put(records)
        if on_durable is not None:
            on_durable()

    def offer(self, records: list[Record]) -> None:
        """Queue records without waiting; with the queue full they go to the spool."""
        if not records:
            return
        if self.journal:
            self._to_spool(records)
            return
        try:
            self.queue.put_nowait(records)
        except asyncio.QueueFull:
            self._to_spool(records)

    def _waiting(self) -> bool:
        return bool(self._overflow) or self.spool.depth(self.sink.name) > 0

    async def close(self) -> None:
        """Deliver or spool everything queued, then close the sink."""
        self._closing = True
        self._wake.set()
        if not self.journal:
            await self.queue.put(None)

    async def run(self) -> None:
        """Deliver until :meth:`close` is called and the queue is empty."""
        try:
            if self.journal:
                await self._run_journal()
            else:
                await self._run_batches()
            # Last chance for the spool on a clean shutdown; what stays is kept on disk.
            self._retry_at = 0.0
            await self._drain_spool()
            if self._overflow:
                lost = sum(len(r) for r, _ in self._overflow)
                log.critical("%s: %d records could neither be delivered nor spooled and are"
                             " lost at shutdown", self.sink.name, lost)
        finally:
            await self.sink.close()

    async def _run_journal(self) -> None:
        while not self._closing:
            timeout = self.flush_interval_s
            if self._retry_at > time.monotonic():
                timeout = max(0.05, self._retry_at - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            await self._drain_spool()

    async def _run_batches(self) -> None:
        done = False
        while not done:
            batch, done = await self._gather()
            await self._drain_spool()
            if batch:
                if self._waiting():
                    self._to_spool(batch)  # keep order behind what waits
                else:
                    await self._deliver(batch)

    async def _gather(self) -> tuple[list[Record], bool]:
        """Up to batch_size records, waiting at most flush_interval_s after the first."""
        batch: list[Record] = []
        timeout = self.flush_interval_s
        if self._waiting():
            timeout = max(0.05, min(timeout, self._retry_at - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            item = await asyncio.wait_for(self.queue.get(), timeout)
            if item is None:
                return batch, True
            batch.extend(item)
        deadline = time.monotonic() + self.flush_interval_s
        while len(batch) < self.batch_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.monotonic()
                if left <= 0 or not batch:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), left)
                except TimeoutError:
                    break
            if item is None:
                return batch, True
            batch.extend(item)
        return batch, False

    async def _deliver(self, batch: list[Record]) -> bool:
        name = self.sink.name
        for start in range(0, len(batch), self.batch_size):
            part = batch[start : start + self.batch_size]
            try:
                await self._write(part)
            except PermanentSinkError as exc:
                log.error("%s refused %d records for good, kept in the spool's rejected "
                          "table: %s", name, len(part), exc)
                self.spool.push(name, part, table="rejected", error=str(exc)[:1000])
                self.metrics.failures.labels(name).inc()
                continue
            except SinkError as exc:
                self.metrics.failures.labels(name).inc()
                self._fail(exc)
                self._to_spool(batch[start:])
                return False
            self.metrics.delivered.labels(name).inc(len(part))
        self._ok()
        return True

    async def _write(self, records: list[Record]) -> None:
        """The sink's write; a bug in it (not a SinkError) is counted and retried."""
        try:
            await self.sink.write(records)
        except SinkError:
            raise
        except Exception as exc:
            self._errors.inc()
            log.exception("%s: unexpected error writing %d records; kept for retry",
                          self.sink.name, len(records))
            raise SinkError(f"internal error: {type(exc).__name__}: {exc}") from exc

    def _to_spool(self, records: list[Record],
                  on_durable: Callable[[], None] | None = None) -> None:
        # callbacks run in order: behind what the spool has not taken yet, they wait
        if self._overflow or (records and not self._push(records)):
            self._overflow.append((records, on_durable))
        elif on_durable is not None:
            on_durable()
        if records and (not self.journal or self._retry.down_since is not None):
            self.metrics.spooled.labels(self.sink.name).inc(len(records))

    def _push(self, records: list[Record]) -> bool:
        try:
            self.spool.push(self.sink.name, records)
        except SpoolError as exc:
            self._errors.inc()
            log.error("%s: cannot spool %d records (%s); held in memory until the spool "
                      "takes them", self.sink.name, len(records), exc)
            return False
        return True

    def _ok(self) -> None:
        down = self._retry.succeeded()
        if down is not None:
            log.warning("%s available again after %.1f s", self.sink.name, down)

    def _fail(self, exc: Exception) -> None:
        unlogged = self._retry.failed()
        self._retry_at = time.monotonic() + self._retry.wait
        if unlogged is not None:
            log.warning("%s unavailable (%s); spooling, retry in %.1f s%s", self.sink.name,
                        exc, self._retry.wait, Retry.since(unlogged))

    async def _drain_spool(self) -> None:
        name = self.sink.name
        while self._overflow:  # the spool is ahead of them: it must take them first
            records, on_durable = self._overflow[0]
            if records and not self._push(records):
                self._retry_at = max(self._retry_at, time.monotonic() + 1.0)
                break
            self._overflow.popleft()
            if on_durable is not None:
                on_durable()
        while self.spool.depth(name) and time.monotonic() >= self._retry_at:
            head = self.spool.peek_many(name, self.batch_size)
            if head is None:
                return
            upto, records = head
            try:
                await self._write(records)
            except PermanentSinkError as exc:
                self.spool.push(name, records, table="rejected", error=str(exc)[:1000])
                self.spool.delete_upto(name, upto)
                continue
            except SinkError as exc:
                self.metrics.failures.labels(name).inc()
                self._fail(exc)
                return
            self.spool.delete_upto(name, upto)
            self.metrics.delivered.labels(name).inc(len(records))
            self._ok()
