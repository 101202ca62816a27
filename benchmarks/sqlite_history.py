"""The SQLite history's insert cost per sample: the sink as shipped against variants.

    .venv/bin/python benchmarks/sqlite_history.py [--batches 60] [--batch 5000]

Each variant gets a fresh file in WAL mode and the same records: 200 beds of HR in
batches of ``--batch`` (the history writer's batch size), as the journal hands them over
(JSON arrays, one row per sample). Timed per batch: decoding the journal's JSON and the
insert transaction. The variants:

* ``shipped``: :class:`monitor.sinks.sqlite.SqliteHistorySink` (one unique index on
  (ward, bed, metric, t));
* ``two indexes``: the same table with the second, non-unique index on the same key that
  versions before 95e5455 kept;
* ``without rowid``: the rows stored in the key's own B-tree (``WITHOUT ROWID``);
* ``json_each``: the journal's JSON handed to SQLite whole (``INSERT … SELECT FROM
  json_each(?)``), no Python row per sample.

Prints µs per row and each variant's ratio to ``shipped``, measured in the same process.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.sinks.sqlite import SqliteHistorySink

T0 = 1.7e9
TABLE = """CREATE TABLE vitals (ward TEXT NOT NULL, bed TEXT NOT NULL, metric TEXT NOT NULL,
    t REAL NOT NULL, value REAL NOT NULL, score REAL, forecast REAL{key})"""
ONCE = "CREATE UNIQUE INDEX vitals_once ON vitals (ward, bed, metric, t)"
INSERT = "INSERT OR IGNORE INTO vitals VALUES (?, ?, ?, ?, ?, ?, ?)"


def journal(batches: int, size: int) -> list[bytes]:
    """The batches as the journal keeps them: JSON arrays of history rows."""
    out = []
    for k in range(batches):
        rows = []
        for j in range(size):
            i = k * size + j
            bed = i % 200
            rows.append(["v", f"B{bed // 30}", str(bed), "hr", T0 + i * 0.01, 60.0 + i % 29,
                         round((i % 97) / 97, 4), None if j % 7 == 0 else 70.12])
        out.append(orjson.dumps(rows))
    return out


def plain(db: sqlite3.Connection) -> Callable[[bytes], None]:
    def write(body: bytes) -> None:
        rows = [r[1:] for r in orjson.loads(body) if r[0] == "v"]
        with db:
            db.executemany(INSERT, rows)
    return write


def variants(folder: Path) -> dict[str, Callable[[bytes], None]]:
    def fresh(name: str, *schema: str) -> sqlite3.Connection:
        db = sqlite3.connect(folder / f"{name}.db", isolation_level="DEFERRED",
                             check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        for stmt in schema:
            db.execute(stmt)
        return db

    sink = SqliteHistorySink(folder / "shipped.db")
    two = fresh("two", TABLE.format(key=""), ONCE,
                "CREATE INDEX vitals_stream_t ON vitals (ward, bed, metric, t)")
    norowid = fresh("norowid",
                    TABLE.format(key=", PRIMARY KEY (ward, bed, metric, t)") + " WITHOUT ROWID")
    each = fresh("each", TABLE.format(key=""), ONCE)

    def json_each(body: bytes) -> None:
        with each:
            each.execute("INSERT OR IGNORE INTO vitals SELECT value->>1, value->>2, value->>3,"
                         " value->>4, value->>5, value->>6, value->>7 FROM json_each(?)"
                         " WHERE value->>0 = 'v'", (body,))

    return {"shipped": lambda body: sink._write(orjson.loads(body)),
            "two indexes": plain(two), "without rowid": plain(norowid),
            "json_each": json_each}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args()
    bodies = journal(args.batches, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        writers = variants(Path(tmp))
        took = dict.fromkeys(writers, 0.0)
        for body in bodies:  # the variants take turns, so the machine's noise is shared
            for name, write in writers.items():
                start = time.perf_counter()
                write(body)
                took[name] += time.perf_counter() - start
    rows = args.batches * args.batch
    for name, seconds in took.items():
        print(f"{name:>14}: {seconds / rows * 1e6:5.2f} µs per row "
              f"({seconds / took['shipped']:.2f}× shipped) over {rows:,} rows")


if __name__ == "__main__":
    main()
