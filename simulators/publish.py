"""Publishing simulated or recorded streams over MQTT, per the wire contract.

Rows are (ward, bed, metric, t, value). They are sent in observation-time order, one
message per bed and instant, paced so that ``speed`` seconds of observation time pass per
wall second (0: as fast as the broker takes them). With ``retime`` the first row is moved
to the wall clock's now and the rest keep their spacing, so a recording from any date is
accepted as live. Faster than real time, observation time runs ahead of the wall clock:
the daemon must accept that (``[ingest] max_future_s``), as ``wardwatch demo`` does.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson

from monitor.mqtt import client_args
from monitor.vitals import METRIC_IDS, METRICS
from simulators.patients import Patient

Row = tuple[str, str, str, float, float]  # ward, bed, metric, t, value
UNITS = {m.name: m.unit for m in METRICS}


def patient_rows(patients: Iterable[Patient]) -> list[Row]:
    """Every reported sample of ``patients``, in observation-time order."""
    rows: list[Row] = []
    for p in patients:
        for metric, (t, v) in p.streams.items():
            rows.extend((p.ward, p.bed, metric, tt, vv)
                        for tt, vv in zip(t.tolist(), v.tolist(), strict=True))
    rows.sort(key=lambda r: r[3])
    return rows


def csv_rows(path: Path) -> list[Row]:
    """Rows of a ``streams.csv`` as ``wardwatch simulate --out`` writes it (columns ward,
    bed, metric, timestamp, value; others are ignored)."""
    rows: list[Row] = []
    with open(path, newline="") as fh:
        for i, rec in enumerate(csv.DictReader(fh), start=2):
            try:
                metric = rec["metric"]
                if metric not in METRIC_IDS:
                    raise ValueError(f"unknown metric {metric!r}")
                rows.append((rec["ward"], rec["bed"], metric, float(rec["timestamp"]),
                             float(rec["value"])))
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{i}: {exc}") from exc
    rows.sort(key=lambda r: r[3])
    return rows


def messages(rows: list[Row], *, retime: bool, now: float) -> Iterator[tuple[float, str, bytes]]:
    """(observation time, topic, payload): one message per bed and instant."""
    shift = (now - rows[0][3]) if retime and rows else 0.0
    for (ward, bed, t), group in groupby(rows, key=lambda r: (r[0], r[1], r[3])):
        obs = [{"metric": m, "t": round(t + shift, 3), "v": v, "unit": UNITS[m]}
               for _, _, m, _, v in group]
        yield t + shift, f"wardwatch/v1/obs/{ward}/{bed}", orjson.dumps({"obs": obs})


async def publish(url: str, rows: list[Row], *, speed: float, retime: bool = True,
                  max_in_flight: int = 200, progress: Any = None) -> int:
    """Publish ``rows`` at QoS 1, paced by ``speed``; returns the messages sent."""
    import aiomqtt

    sent = 0
    gate = asyncio.Semaphore(max_in_flight)
    wall0 = time.time()
    async with aiomqtt.Client(**client_args(url, identifier=f"wardwatch-sim-{int(wall0)}")) as c:
        pending: set[asyncio.Task[None]] = set()

        async def one(topic: str, payload: bytes) -> None:
            try:
                await c.publish(topic, payload, qos=1)
            finally:
                gate.release()

        t0: float | None = None
        for t, topic, payload in messages(rows, retime=retime, now=wall0):
            t0 = t if t0 is None else t0
            if speed > 0:
                delay = wall0 + (t - t0) / speed - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await gate.acquire()
            task = asyncio.create_task(one(topic, payload))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
            if progress is not None:
                progress()
        if pending:
            await asyncio.gather(*pending)
    return sent
