"""The embedded default history store: vitals and alarm events in a SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from monitor.errors import SinkError, WardwatchError
from monitor.spool import Record
from monitor.sqlitedb import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vitals (
    ward TEXT NOT NULL, bed TEXT NOT NULL, metric TEXT NOT NULL,
    t REAL NOT NULL, value REAL NOT NULL, score REAL, forecast REAL
);
-- vitals_once (below) is the one index on (ward, bed, metric, t): earlier versions kept
-- a second, non-unique one on the same key, and every insert paid for both B-trees
-- (twice the cost a row: benchmarks/sqlite_history.py)
DROP INDEX IF EXISTS vitals_stream_t;
CREATE TABLE IF NOT EXISTS alarms (
    id TEXT NOT NULL, ward TEXT NOT NULL, bed TEXT NOT NULL, metric TEXT NOT NULL,
    code TEXT NOT NULL, priority TEXT NOT NULL, state TEXT NOT NULL, t REAL NOT NULL,
    value REAL, threshold REAL, forecast REAL, message TEXT
);
CREATE INDEX IF NOT EXISTS alarms_bed_t ON alarms (ward, bed, t);
CREATE TABLE IF NOT EXISTS bed_anomaly (
    ward TEXT NOT NULL, bed TEXT NOT NULL, t REAL NOT NULL, score REAL NOT NULL
);
"""
# One row per sample: a message redelivered after a crash is not stored twice. A file
# from before the unique index may hold such twins: keep the first of each, once (the
# scan is of the whole table, so not on every start).
_ONCE = """
DELETE FROM vitals WHERE rowid NOT IN (SELECT MIN(rowid) FROM vitals GROUP BY ward, bed, metric, t);
CREATE UNIQUE INDEX vitals_once ON vitals (ward, bed, metric, t);
"""


class SqliteHistorySink:
    """Writes history records into ``vitals`` and ``alarms`` tables."""

    def __init__(self, path: str | Path) -> None:
        self.name = "history"
        self.path = str(path)
        self._db = connect(self.path, what="SQLite history", schema=_SCHEMA)
        try:
            if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index'"
                                    " AND name = 'vitals_once'").fetchone():
                self._db.executescript(_ONCE)
        except sqlite3.Error as exc:
            self._db.close()
            raise WardwatchError(f"cannot open SQLite history {self.path}: {exc}") from exc

    def _write(self, records: Sequence[Record]) -> None:
        vitals = [tuple(r[1:]) for r in records if r[0] == "v"]
        alarms = [
            (a["id"], a["ward"], a["bed"], a["metric"], a["code"], a["priority"], a["state"],
             a["t"], a["value"], a["threshold"], a["forecast"], a["message"])
            for r in records if r[0] == "a" for a in (r[1],)
        ]
        beds = [tuple(r[1:]) for r in records if r[0] == "b"]
        with self._db:
            self._db.executemany("INSERT INTO bed_anomaly VALUES (?, ?, ?, ?)", beds)
            self._db.executemany("INSERT OR IGNORE INTO vitals VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 vitals)
            self._db.executemany(
                "INSERT INTO alarms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", alarms
            )

    async def write(self, records: Sequence[Record]) -> None:
        try:
            await asyncio.to_thread(self._write, records)
        except sqlite3.Error as exc:
            raise SinkError(f"SQLite history {self.path}: {exc}") from exc

    async def close(self) -> None:
        self._db.close()
