"""The bridge's store-and-forward spool: MQTT messages on disk, in order, until the broker
has acknowledged them.

A message is in the spool once :meth:`Spool.put` returns: the transaction is committed
with ``synchronous=FULL``, so it survives a power cut, and only then does the bridge
answer the device ``AA``. The forwarder reads in sequence order and deletes a message
once the broker's PUBACK for it has come back. The spool is bounded: at
``max_messages`` it refuses new messages (:class:`SpoolFull`), so the device keeps its
data and sends it again; spooled data is never dropped.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from monitor.errors import SpoolError
from monitor.sqlitedb import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    received REAL NOT NULL
);
"""


class SpoolFull(SpoolError):
    """The spool holds ``max_messages``: refuse, do not drop."""


class Spool:
    def __init__(self, path: str | Path, max_messages: int) -> None:
        self.path = str(path)
        self.max_messages = max_messages
        self._db = connect(path, what="bridge spool", schema=_SCHEMA,
                           pragmas=("synchronous=FULL",), autocommit=True,
                           error=SpoolError)
        self.depth = int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def put(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Store ``(topic, payload)`` pairs, all or none; durable when this returns."""
        if self.depth + len(messages) > self.max_messages:
            raise SpoolFull(f"spool full ({self.depth} of {self.max_messages} messages "
                            "waiting for the broker)")
        now = time.time()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO spool (topic, payload, received) VALUES (?, ?, ?)",
                    [(topic, payload, now) for topic, payload in messages])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:  # disk full, I/O error: the device keeps its data
            raise SpoolError(f"cannot write spool {self.path}: {exc}") from exc
        self.depth += len(messages)

    def after(self, seq: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` messages after ``seq``, in order."""
        rows = self._db.execute(
            "SELECT seq, topic, payload FROM spool WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit)).fetchall()
        return [(int(s), str(t), bytes(p)) for s, t, p in rows]

    def delete(self, seqs: Iterable[int]) -> None:
        """Forget messages the broker has acknowledged."""
        rows = [(s,) for s in seqs]
        if not rows:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.executemany("DELETE FROM spool WHERE seq = ?", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot write spool {self.path}: {exc}") from exc
        self.depth -= cur.rowcount

    def oldest_age(self) -> float:
        row = self._db.execute("SELECT MIN(received) FROM spool").fetchone()
        return 0.0 if row[0] is None else max(0.0, time.time() - float(row[0]))

    def close(self) -> None:
        self._db.close()
