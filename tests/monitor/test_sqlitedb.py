"""Every SQLite store opens the same way and fails with an error that names its file."""

from __future__ import annotations

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
