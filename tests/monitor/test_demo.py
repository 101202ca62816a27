"""The README's first command: `wardwatch demo` runs the whole thing with no server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_embedded_broker_ward_and_daemon_and_raises_alarms(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "demo", "--plain", "--simulated", "1h",
         "--speed", "300", "--metrics-port", "0", "--store", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "wardwatch demo: 8 beds" in out
    # storylines that must alarm within an hour of simulated time, delays included
    assert "hr.news2.3" in out and "firing" in out
    assert "glucose.low" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("demo done:")
    # the whole hour, however slow the machine: the ward paces itself, the demo drains
    assert last.endswith("60 simulated minutes"), last
    scored = int(last.split()[2])
    assert scored > 1000
    # history went to the embedded SQLite store
    import sqlite3

    with sqlite3.connect(tmp_path / "history.db") as db:
        (n,) = db.execute("SELECT COUNT(*) FROM vitals").fetchone()
        (a,) = db.execute("SELECT COUNT(*) FROM alarms WHERE state = 'firing'").fetchone()
    assert n == scored
    assert a >= 2
    with sqlite3.connect(tmp_path / "alarms.db") as db:
        (audited,) = db.execute("SELECT COUNT(*) FROM audit WHERE action = 'firing'").fetchone()
    assert audited == a
