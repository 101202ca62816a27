"""A partition's state, portable between workers (issue #19).

In a cluster (``monitor/cluster.py``) a partition's beds move between workers. What
moves with them is everything that decides what fires next:

* each stream's model state (the same 1,704-byte rows as ``models.db``, with the
  observation time of the last sample each reflects);
* the alarm machines that are not idle: pending conditions, active alarms with their
  acknowledgement, snooze, latch and escalation;
* the beds' admissions (per-patient rule overrides);
* at a clean hand-over only, the per-bed multivariate detectors (pickling them takes
  ~3 ms per bed: too long to do between batches; after a crash they re-learn).

:func:`capture` takes them from a running processor, between batches, as one compressed
blob (msgpack); :func:`materialize` writes a blob into a fresh store directory, whose
``models.db`` and ``alarms.db`` the daemon then restores from as after a restart.
What stays behind on the worker: the audit log of its tenure (in its ``alarms.db``) and
the station page's minute trends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from monitor.alarmstore import AlarmStore
from monitor.checkpoint import LAYOUT, ModelStore, Snapshot, snapshot
from monitor.errors import WardwatchError
from monitor.pipeline import Processor

if TYPE_CHECKING:
    from monitor.daemon import Daemon, PartitionLease

log = logging.getLogger(__name__)

FORMAT = 1


class PartitionStateError(WardwatchError):
    """A partition's state blob that cannot be read."""


class Fenced(WardwatchError):
    """Another worker holds the partition now: this one must let it go."""


def capture(processor: Processor, *, detectors: bool = False) -> bytes:
    """The partition's state now (call between batches, on the event loop)."""
    table = processor.streams
    engine = processor.alarms
    doc: dict[str, Any] = {
        "format": FORMAT,
        "layout": LAYOUT,
        "streams": snapshot(table, range(len(table))).rows,
        "groups": [[w, b, r, gs.to_json()] for (w, b, r), gs in engine.groups.items()
                   if not gs.idle],
        "admissions": [[w, b, adm] for (w, b), adm in engine.admissions.items()],
        "detectors": processor.beds.checkpoint() if detectors else None,
    }
    return zlib.compress(msgspec.msgpack.encode(doc), 1)


def decode(blob: bytes) -> dict[str, Any]:
    try:
        doc = msgspec.msgpack.decode(zlib.decompress(blob))
    except (zlib.error, msgspec.DecodeError) as exc:
        raise PartitionStateError(f"partition state unreadable: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PartitionStateError("partition state of an unknown format")
    return doc


def materialize(blob: bytes, store: Path) -> dict[str, int]:
    """Write a captured state into the (fresh) store directory ``store``; counts."""
    doc = decode(blob)
    store.mkdir(parents=True, exist_ok=True)
    streams = doc["streams"] if doc["layout"] == LAYOUT else []  # else: re-learn
    models = ModelStore(store / "models.db")
    try:
        rows = [(str(w), str(b), int(m), float(t), bytes(s)) for w, b, m, t, s in streams]
        blobs = {"beds": bytes(doc["detectors"])} if doc.get("detectors") else {}
        models.write(Snapshot(rows, blobs))
    finally:
        models.close()
    alarms = AlarmStore(store / "alarms.db")
    try:
        alarms.save({(str(w), str(b), str(r)): gs for w, b, r, gs in doc["groups"]}, [])
        for w, b, adm in doc["admissions"]:
            alarms.set_admission(str(w), str(b), adm)
    finally:
        alarms.close()
    return {"streams": len(streams), "alarm_machines": len(doc["groups"]),
            "admissions": len(doc["admissions"])}


class Committer:
    """A partition daemon's commits: its state and the stream position it reflects."""

    def __init__(self, daemon: Daemon, lease: PartitionLease) -> None:
        self.daemon = daemon
        self.lease = lease
        self.fenced = False  # another worker took the partition: nothing more is committed
        self._one = asyncio.Lock()  # one commit at a time: each is a compare-and-set

    async def run(self, halt: asyncio.Event, stop: asyncio.Event) -> None:
        """Commit every ``lease.every_s`` until ``halt``; on a fence, set ``stop``."""
        while not halt.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), self.lease.every_s)
            if halt.is_set():
                return
            await self.commit()
            if self.fenced:
                stop.set()
                return

    async def commit(self, *, release: bool = False) -> None:
        """Commit the partition's state with the stream position it reflects.

        The state is captured between batches; the position is the newest message
        whose history was journalled by then (one processed after it and read again by
        the next holder is an old sample to it, and not applied twice). It is committed
        only once every alarm event made so far is published: the next holder starts
        after a message only when the state after it and the events it made are both in
        the cluster. ``release``: the last commit of a hand-over, naming no holder."""
        async with self._one:
            await self._commit(release)

    async def _commit(self, release: bool) -> None:
        d = self.daemon
        if self.fenced:
            return
        intake = d.intake  # a StreamIntake: what it was told is durable since the last commit
        tokens, intake.durable = intake.durable, []
        state: bytes | None
        try:
            state = capture(d.processor, detectors=release)
        except Exception as exc:  # a bug: keep the previous state; the messages come again
            d.processor.internal_error("commit", exc, d.clock(), "partition state")
            state = None
        upto = d.alarm_store.last_seq()
        deadline = time.monotonic() + max(5.0, 5 * self.lease.every_s)
        while not d.alarm_store.sent_upto(upto):
            if time.monotonic() > deadline or (release and d.relay_done):
                state = None  # events not out: the next holder makes them again
                break
            d.wake_relay()
            await asyncio.sleep(0.01)
        if state is None:
            intake.durable[:0] = tokens
            tokens = []
        position = max((tok.mid for tok in tokens), default=None)
        try:
            await self.lease.commit(state, position, release=release)
        except Fenced as exc:
            log.warning("partition %d: %s; leaving it", self.lease.partition, exc)
            self.fenced = True
        except Exception as exc:  # the store is away: commit later
            d.metrics.failures.labels("partition_state").inc()
            log.warning("partition %d: state not committed (%s); retrying",
                        self.lease.partition, exc)
            intake.durable[:0] = tokens
