"""Alarm state, admissions and the audit log in SQLite, so a restart changes nothing.

``alarm_state`` holds one row per (bed, rule) whose machine is not idle: its pending
conditions and active alarm, with ack, snooze, latch and escalation. ``outbox``
holds every alarm event, written in the same transaction as the state change that
made it; the daemon's relay publishes unsent rows in order and marks them sent once
the broker has acknowledged them, so a crash between the two re-sends, never loses.
``audit`` is append-only: every firing, acknowledgement, snooze, escalation, resolution, admission
and refused request, with who, when (wall clock) and why. The alarm burden is a query
over it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from monitor.sqlitedb import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_state (
    ward TEXT NOT NULL, bed TEXT NOT NULL, rule TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (ward, bed, rule)
);
CREATE TABLE IF NOT EXISTS admissions (
    ward TEXT NOT NULL, bed TEXT NOT NULL, admission TEXT NOT NULL,
    PRIMARY KEY (ward, bed)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    clock REAL NOT NULL, ward TEXT NOT NULL, bed TEXT NOT NULL, alarm_id TEXT NOT NULL,
    code TEXT NOT NULL, priority TEXT NOT NULL, action TEXT NOT NULL, by TEXT NOT NULL,
    detail TEXT NOT NULL, client TEXT NOT NULL DEFAULT '', t REAL
);
CREATE INDEX IF NOT EXISTS audit_clock ON audit (clock);
CREATE INDEX IF NOT EXISTS audit_alarm ON audit (alarm_id);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL, topic TEXT NOT NULL, payload TEXT NOT NULL, sent REAL
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE sent IS NULL;
"""


@dataclass(frozen=True, slots=True)
class Burden:
    ward: str
    bed: str
    code: str
    priority: str
    alarms: int
    per_day: float


class AlarmStore:
    """The engine's persistence (see :class:`monitor.lifecycle.AlarmEngine`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = connect(self.path, what="alarm store", schema=_SCHEMA)
        cols = {row[1] for row in self._db.execute("PRAGMA table_info(audit)")}
        if "client" not in cols:  # a store from before senders were recorded
            with self._db:
                self._db.execute("ALTER TABLE audit ADD COLUMN client TEXT NOT NULL DEFAULT ''")
        if "t" not in cols:  # ... and before entries carried their observation time
            with self._db:
                self._db.execute("ALTER TABLE audit ADD COLUMN t REAL")

    def groups(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        rows = self._db.execute("SELECT ward, bed, rule, state FROM alarm_state")
        return {(w, b, r): orjson.loads(s) for w, b, r, s in rows}

    def admissions(self) -> dict[tuple[str, str], dict[str, Any]]:
        rows = self._db.execute("SELECT ward, bed, admission FROM admissions")
        return {(w, b): orjson.loads(a) for w, b, a in rows}

    def save(self, changed: Mapping[tuple[str, str, str], dict[str, Any] | None],
             audit: Iterable[Any], outbox: Iterable[tuple[str, str]] = ()) -> None:
        """Upsert (or delete, for None: idle again) machine states; append audit lines
        and the events to publish, (topic, payload): one transaction."""
        with self._db:
            now = time.time()
            self._db.executemany(
                "INSERT INTO outbox (created, topic, payload) VALUES (?, ?, ?)",
                [(now, topic, payload) for topic, payload in outbox])
            for (ward, bed, rule), state in changed.items():
                if state is None:
                    self._db.execute(
                        "DELETE FROM alarm_state WHERE ward = ? AND bed = ? AND rule = ?",
                        (ward, bed, rule))
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO alarm_state VALUES (?, ?, ?, ?)",
                        (ward, bed, rule, orjson.dumps(state).decode()))
            self._db.executemany(
                "INSERT INTO audit (clock, ward, bed, alarm_id, code, priority, action, by,"
                " detail, client, t) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(a.clock, a.ward, a.bed, a.alarm_id, a.code, a.priority, a.action, a.by,
                  a.detail, a.client, a.t) for a in audit])

    def unsent(self, limit: int = 500) -> list[tuple[int, str, str]]:
        """The oldest events not yet acknowledged by the broker: (seq, topic, payload)."""
        return self._db.execute(
            "SELECT seq, topic, payload FROM outbox WHERE sent IS NULL ORDER BY seq LIMIT ?",
            (limit,)).fetchall()

    def last_seq(self) -> int:
        """The newest event's sequence number (0: none yet)."""
        row = self._db.execute("SELECT MAX(seq) FROM outbox").fetchone()
        return int(row[0] or 0)

    def sent_upto(self, seq: int) -> bool:
        """Whether every event up to ``seq`` has been published."""
        return self._db.execute("SELECT 1 FROM outbox WHERE sent IS NULL AND seq <= ?"
                                " LIMIT 1", (seq,)).fetchone() is None

    def mark_sent(self, upto: int, keep_s: float = 86_400.0) -> None:
        """Every event up to ``upto`` was published; forget those sent over ``keep_s`` ago."""
        now = time.time()
        with self._db:
            self._db.execute("UPDATE outbox SET sent = ? WHERE seq <= ? AND sent IS NULL",
                             (now, upto))
            self._db.execute("DELETE FROM outbox WHERE sent IS NOT NULL AND sent < ?",
                             (now - keep_s,))

    def set_admission(self, ward: str, bed: str, admission: dict[str, Any] | None) -> None:
        with self._db:
            if admission is None:
                self._db.execute("DELETE FROM admissions WHERE ward = ? AND bed = ?", (ward, bed))
            else:
                self._db.execute("INSERT OR REPLACE INTO admissions VALUES (?, ?, ?)",
                                 (ward, bed, orjson.dumps(admission).decode()))

    def audit_log(self, *, ward: str | None = None, alarm_id: str | None = None,
                  limit: int = 200, wards: Collection[str] | None = None,
                  people: bool | None = None) -> list[dict[str, Any]]:
        """The newest audit lines first: of ``ward`` or any of ``wards`` (None: all);
        ``people`` True: only what people did, False: only wardwatch's own entries."""
        sql = ("SELECT seq, clock, ward, bed, alarm_id, code, priority, action, by, detail,"
               " client, t FROM audit")
        where, args = [], []
        if ward is not None:
            where.append("ward = ?")
            args.append(ward)
        if wards is not None:
            where.append(f"ward IN ({', '.join('?' * len(wards))})" if wards else "0")
            args.extend(wards)
        if alarm_id is not None:
            where.append("alarm_id = ?")
            args.append(alarm_id)
        if people is not None:
            where.append("by != 'wardwatch'" if people else "by = 'wardwatch'")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        cols = ("seq", "clock", "ward", "bed", "alarm_id", "code", "priority", "action", "by",
                "detail", "client", "t")
        return [dict(zip(cols, row, strict=True))
                for row in self._db.execute(sql, (*args, limit))]

    def burden(self, days: float = 1.0, now: float | None = None) -> list[Burden]:
        """Alarms fired per bed and code over the last ``days``, most frequent first."""
        now = time.time() if now is None else now
        rows = self._db.execute(
            "SELECT ward, bed, code, priority, COUNT(*) AS n FROM audit"
            " WHERE action = 'firing' AND clock >= ?"
            " GROUP BY ward, bed, code, priority ORDER BY n DESC, ward, bed, code",
            (now - days * 86400.0,))
        return [Burden(w, b, c, p, n, n / days) for w, b, c, p, n in rows]

    def close(self) -> None:
        self._db.close()
