"""Opening wardwatch's SQLite files (alarm store, spool, history, station accounts).

One way to open them, so every store creates its folder, runs in WAL mode and fails
the same clear way: an unwritable folder, a file that is not a database or one locked
by another process becomes a :class:`~monitor.errors.WardwatchError` (or the subclass
the caller names) that says which file and what for, not a bare ``sqlite3`` error.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from monitor.errors import WardwatchError

__all__ = ["connect"]


def connect(path: str | Path, *, what: str, schema: str = "",
            pragmas: Sequence[str] = (), autocommit: bool = False,
            error: type[WardwatchError] = WardwatchError) -> sqlite3.Connection:
    """Open the SQLite file at ``path`` (``":memory:"`` too), creating its folder; set WAL
    and ``pragmas`` (``"synchronous=NORMAL"``); run ``schema``.

    ``what`` names the file in the error (``"cannot open spool /var/…: …"``).
    ``autocommit``: every statement commits itself (no implicit transactions).
    The connection may be used from worker threads (``check_same_thread=False``); the
    caller serialises its use.
    """
    where = str(path)
    try:
        if where != ":memory:":
            Path(where).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(where, check_same_thread=False,
                             isolation_level=None if autocommit else "DEFERRED")
        try:
            db.execute("PRAGMA journal_mode=WAL")
            for pragma in pragmas:
                db.execute(f"PRAGMA {pragma}")
            if schema:
                db.executescript(schema)
        except sqlite3.Error:
            db.close()
            raise
    except (OSError, sqlite3.Error) as exc:
        raise error(f"cannot open {what} {where}: {exc}") from exc
    return db
