"""Per-stream model state on disk, so a restart resumes forecasts instead of re-learning.

``models.db`` in the store holds one row per stream, keyed by (ward, bed, metric): the
kernels' state for it (levels, variances, the ARIMA filter, the Hampel and sample rings,
the forecasting grid's history: 1,704 bytes) and ``t``, the observation time of the last
sample it reflects, its position in the stream. The daemon writes the streams that moved
since the last checkpoint every ``[store] checkpoint_s`` seconds (in a worker thread, from
a copy taken between batches) and at a clean stop, when the per-bed multivariate detectors
go too (one blob: pickling them takes ~3 ms per bed, too long between batches). At start
it restores them, and a sample at or before a stream's ``t`` is then an old one (out of
order), as it would have been without the
restart. The alarm lifecycle has its own store (``alarms.db``), written with every batch.

A crash loses at most ``checkpoint_s`` of model learning, never an observation or an
alarm: the samples since the checkpoint were judged and stored before the crash, and the
restored model goes on from the checkpoint's state, as from a short gap.

Keyed per bed, the same rows let a worker that takes over a bed restore that bed alone
(issue #19).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.errors import SpoolError
from monitor.scoring import ROW_BYTES, StreamTable
from monitor.scoring import _layout as L
from monitor.sqlitedb import connect

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    ward TEXT NOT NULL, bed TEXT NOT NULL, metric INTEGER NOT NULL,
    t REAL NOT NULL, state BLOB NOT NULL, PRIMARY KEY (ward, bed, metric));
CREATE TABLE IF NOT EXISTS blobs (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: what a row's bytes mean; a checkpoint from another layout is not read (re-learn)
LAYOUT = f"{L.NF}.{L.NI}.{L.RING}.{L.WMAX}.{L.GHIST}.{ROW_BYTES}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Rows copied out of a table between batches: what one checkpoint writes."""

    rows: list[tuple[str, str, int, float, bytes]]
    blobs: dict[str, bytes]


def snapshot(table: StreamTable, sids: Sequence[int],
             blobs: dict[str, bytes] | None = None) -> Snapshot:
    """Copy the rows of ``sids`` (cheap; taken in the event loop between batches)."""
    rows = []
    for s in sids:
        ward, bed, metric = table.keys[s]
        rows.append((ward, bed, metric, float(table.fs[s, L.F_LAST_T]), table.row_state(s)))
    return Snapshot(rows, dict(blobs or {}))


class Checkpointer:
    """Which streams moved since the last checkpoint, and their copies."""

    def __init__(self, streams: StreamTable, blobs: Callable[[], dict[str, bytes]]) -> None:
        self.streams = streams
        self.blobs = blobs
        self._saved = np.empty(0)  # each row's last sample time at the last checkpoint

    def take(self, *, final: bool = False) -> Snapshot | None:
        """A snapshot of the streams that moved (None: nothing did). The blobs (the
        per-bed detectors: ~45 KB and ~3 ms of pickling per bed, in the event loop) only
        with ``final``, at a clean stop: between batches they would stall alarms."""
        n = len(self.streams)
        last = self.streams.fs[:n, L.F_LAST_T]
        saved = np.full(n, np.nan)
        saved[:self._saved.size] = self._saved[:n]
        moved = np.flatnonzero(~((last == saved) | (np.isnan(last) & np.isnan(saved))))
        if moved.size == 0 and not final:
            return None
        self._saved = last.copy()
        return snapshot(self.streams, moved.tolist(), self.blobs() if final else None)


class ModelStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = connect(path, what="model checkpoint", schema=_SCHEMA,
                           pragmas=("synchronous=NORMAL",), error=SpoolError)
        with self._db:
            found = self._db.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
            if found is not None and found[0] != LAYOUT:
                log.warning("model checkpoint %s has layout %s, not %s: starting the models "
                            "afresh", self.path, found[0], LAYOUT)
                self._db.execute("DELETE FROM streams")
                self._db.execute("DELETE FROM blobs")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('layout', ?)", (LAYOUT,))

    def write(self, snap: Snapshot) -> None:
        """One checkpoint, in one transaction (safe to run in a worker thread)."""
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO streams VALUES (?, ?, ?, ?, ?)",
                                     snap.rows)
                self._db.executemany("INSERT OR REPLACE INTO blobs VALUES (?, ?)",
                                     list(snap.blobs.items()))
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot write model checkpoint {self.path}: {exc}") from exc

    def restore(self, table: StreamTable, checkpointer: Checkpointer | None = None) -> int:
        """Load every checkpointed stream into ``table`` (which must be empty); how many.
        ``checkpointer`` then counts them as saved."""
        assert len(table) == 0, "restore into a fresh table"
        n = 0
        for ward, bed, metric, state in self._db.execute(
                "SELECT ward, bed, metric, state FROM streams ORDER BY rowid"):
            s = table.index(str(ward), str(bed), int(metric))
            n += table.set_row_state(s, bytes(state))
        if checkpointer is not None:
            checkpointer._saved = table.fs[:len(table), L.F_LAST_T].copy()
        return n

    def blob(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM blobs WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self._db.close()
