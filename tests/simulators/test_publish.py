"""Simulated and recorded streams published over real MQTT into a running daemon."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from monitor.config import IngestSettings
from simulators.patients import cohort
from simulators.publish import csv_rows, messages, patient_rows, wfdb_rows
from tests.conftest import RunningDaemon, daemon_settings
from tests.monitor.helpers import eventually

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:The inplace keyword")]  # wfdb on pandas 3


def test_one_message_per_bed_and_instant_and_retiming() -> None:
    rows = patient_rows(cohort(2, seed=4, days=0.05))
    msgs = list(messages(rows, retime=True, now=2_000_000_000.0))
    assert msgs[0][0] == 2_000_000_000.0
    assert sum(len(m[2].split(b'"metric"')) - 1 for m in msgs) == len(rows)
    nibp = next(m for m in msgs if b'"sbp"' in m[2])
    assert b'"dbp"' in nibp[2] and b'"map"' in nibp[2]  # NIBP: one message, three metrics


async def test_simulate_and_replay_publish_into_the_daemon(services: Any,
                                                           tmp_path: Path) -> None:
    settings = daemon_settings(services, tmp_path / "store")
    # accelerated runs put observation time ahead of the wall clock, as the demo does
    settings = replace(settings, ingest=IngestSettings(max_future_s=30 * 86400.0))
    rd = RunningDaemon(settings)
    await rd.start()
    url = settings.mqtt.url
    accepted = 0.0

    def count() -> float:
        return (rd.metric("wardwatch_ingest_observations_total", {"outcome": "accepted"})
                + rd.metric("wardwatch_ingest_observations_total", {"outcome": "out_of_order"}))

    try:
        args = ["--patients", "2", "--days", "0.05", "--seed", "4", "--scenario-mix",
                "haemorrhage=1"]
        sim = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "monitor.cli", "simulate", *args, "--broker", url,
            "--speed", "0"], capture_output=True, text=True, cwd=REPO, check=False)
        assert sim.returncode == 0, sim.stderr
        rows = patient_rows(cohort(2, seed=4, days=0.05, mix={"haemorrhage": 1.0}))
        # every observation arrives: accepted, or (duplicates) counted as out of order
        accepted = await eventually(lambda: count() >= len(rows) and count(), "all samples")
        assert accepted == len(rows)
        # the same patients through a file and `wardwatch replay`
        out = tmp_path / "sim"
        made = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "monitor.cli", "simulate", *args, "--out", str(out)],
            capture_output=True, text=True, cwd=REPO, check=False)
        assert made.returncode == 0, made.stderr
        assert len(csv_rows(out / "streams.csv")) == len(rows)
        rep = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "monitor.cli", "replay", str(out / "streams.csv"),
            "--broker", url, "--speed", "0"], capture_output=True, text=True, cwd=REPO,
            check=False)
        assert rep.returncode == 0, rep.stderr
        # retimed to now: mostly older than what the first run already sent for the same
        # streams, so counted as out of order — but every one is taken in, none lost
        await eventually(lambda: count() >= 2 * len(rows), "the replayed samples")
        # a PhysioNet WFDB numerics record, as a new bed
        from tests.simulators.test_wfdb import numerics

        hea = numerics(tmp_path)
        wf_rows, _ = wfdb_rows(hea, ward="WFDB", bed="9")
        before = count()
        rep = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "monitor.cli", "replay", str(hea), "--bed", "9",
            "--broker", url, "--speed", "0"], capture_output=True, text=True, cwd=REPO,
            check=False)
        assert rep.returncode == 0, rep.stderr
        assert "not replayed (no metric of ours): SpO2" in rep.stderr
        await eventually(lambda: count() >= before + len(wf_rows), "the WFDB samples")
        assert rd.metric("wardwatch_ingest_observations_total", {"outcome": "accepted"}) > 0
    finally:
        await rd.stop()
    bad = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "monitor.cli", "replay", str(tmp_path / "absent.csv"),
        "--broker", url], capture_output=True, text=True, cwd=REPO, check=False)
    assert bad.returncode == 2 and "absent.csv" in bad.stderr
