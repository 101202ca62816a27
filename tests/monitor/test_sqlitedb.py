"""Every SQLite store opens the same way and fails with an error that names its file."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.alarmstore import AlarmStore
from monitor.errors import SpoolError, WardwatchError
from monitor.sinks.sqlite import SqliteHistorySink
from monitor.spool import Spool
from monitor.station.auth import Accounts

STORES: dict[str, tuple[Callable[[Path], object], type[WardwatchError]]] = {
    "alarm store": (AlarmStore, WardwatchError),
    "spool": (Spool, SpoolError),
    "SQLite history": (SqliteHistorySink, WardwatchError),
    "station accounts": (Accounts, WardwatchError),
}


@pytest.mark.parametrize("what", list(STORES))
def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path, what: str) -> None:
    opener, error = STORES[what]
    path = tmp_path / "store.db"
    path.write_bytes(b"these are not the pages of an SQLite database\n" * 100)
    with pytest.raises(error, match=f"cannot open {what} {path}: file is not a database"):
        opener(path)


@pytest.mark.parametrize("what", list(STORES))
def test_a_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path, what: str) -> None:
    opener, error = STORES[what]
    (tmp_path / "plain-file").write_text("x")
    path = tmp_path / "plain-file" / "store.db"  # its "folder" is a file
    with pytest.raises(error, match=f"cannot open {what} {path}: "):
        opener(path)


@pytest.mark.parametrize("what", list(STORES))
def test_each_store_creates_its_folder_and_runs_in_wal_mode(tmp_path: Path, what: str) -> None:
    opener, _ = STORES[what]
    path = tmp_path / "new" / "folder" / "store.db"
    store = opener(path)
    mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]  # type: ignore[attr-defined]
    assert (path.exists(), mode) == (True, "wal")


def test_history_from_an_earlier_version_opens_with_one_row_per_sample_and_one_index(
        tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    old = sqlite3.connect(path)  # as a version before the unique index left it
    old.executescript("""
        CREATE TABLE vitals (ward TEXT NOT NULL, bed TEXT NOT NULL, metric TEXT NOT NULL,
                             t REAL NOT NULL, value REAL NOT NULL, score REAL, forecast REAL);
        CREATE INDEX vitals_stream_t ON vitals (ward, bed, metric, t);
        INSERT INTO vitals VALUES ('4A', '1', 'hr', 10.0, 70, NULL, NULL),
                                  ('4A', '1', 'hr', 10.0, 71, NULL, NULL),
                                  ('4A', '1', 'hr', 11.0, 72, NULL, NULL),
                                  ('4A', '2', 'hr', 10.0, 73, NULL, NULL);
    """)
    old.close()

    def look() -> tuple[list[tuple[str, int]], list[tuple[object, ...]]]:
        db = sqlite3.connect(path)
        indexes = db.execute("SELECT name, \"unique\" FROM pragma_index_list('vitals')"
                             " ORDER BY name").fetchall()
        rows = db.execute("SELECT bed, t, value FROM vitals ORDER BY bed, t").fetchall()
        db.close()
        return indexes, rows

    sink = SqliteHistorySink(path)
    sink._write([["v", "4A", "1", "hr", 11.0, 99.0, None, None],  # redelivered: kept once
                 ["v", "4A", "1", "hr", 12.0, 74.0, 0.5, 75.0]])
    sink._db.close()
    want = [("vitals_once", 1)], [("1", 10.0, 70.0), ("1", 11.0, 72.0), ("1", 12.0, 74.0),
                                  ("2", 10.0, 73.0)]
    assert look() == want
    SqliteHistorySink(path)._db.close()  # a later start: nothing to mend, nothing changes
    assert look() == want
