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
import contextlib
import csv
import time
import warnings
from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from monitor.mqtt import client_args
from monitor.timestamps import parse as parse_timestamp
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
                t = parse_timestamp(rec["timestamp"], file=True)
                rows.append((rec["ward"], rec["bed"], metric, t, float(rec["value"])))
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{i}: {exc}") from exc
    rows.sort(key=lambda r: r[3])
    return rows


# WFDB numerics channel names (upper case, letters and digits only) per metric, in order
# of preference: an arterial line before the cuff
WFDB_CHANNELS: dict[str, tuple[str, ...]] = {
    "hr": ("HR", "PULSE", "PULSERATE"),
    "sbp": ("ABPSYS", "ARTSYS", "NBPSYS", "ABPS", "NBPS", "SBP"),
    "dbp": ("ABPDIAS", "ARTDIAS", "NBPDIAS", "ABPD", "NBPD", "DBP"),
    "map": ("ABPMEAN", "ARTMEAN", "NBPMEAN", "ABPM", "NBPM", "MAP"),
    "glucose": ("GLUCOSE", "GLU", "BG", "CGM"),
}
MG_PER_MMOL = 18.016  # glucose


@contextlib.contextmanager
def _quiet_wfdb() -> Iterator[None]:
    """wfdb 4.3 calls pandas with ``inplace=``, which pandas 3 deprecates with a warning
    on every read; that is wfdb's to fix and says nothing about the record."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        with contextlib.suppress(ImportError):  # pandas < 3 has no Pandas4Warning
            from pandas.errors import Pandas4Warning
            warnings.simplefilter("ignore", Pandas4Warning)
        yield


def wfdb_module() -> Any:
    """The ``wfdb`` package (imported quietly, see :func:`_quiet_wfdb`)."""
    with _quiet_wfdb():
        import wfdb
    return wfdb


def is_wfdb(path: Path) -> bool:
    """A WFDB record: ``NAME.hea``, or ``NAME`` with ``NAME.hea`` beside it."""
    return path.suffix == ".hea" or (not path.suffix and path.with_suffix(".hea").exists())


def wfdb_rows(path: Path, *, ward: str, bed: str | None = None,
              dated: bool = False) -> tuple[list[Row], list[str]]:
    """Rows of a PhysioNet WFDB numerics record (read by the ``wfdb`` package), and the
    channels that map to no metric. Missing samples (NaN) are skipped. A cuff value that
    the recording holds between measurements (``NBP*``: the same value sample after
    sample) is sent once, when it changes, as the monitor reported it. Times start at the
    record's base date and time (taken as UTC), else at 0 — unless ``dated`` asks for
    real times (``replay --keep-times``): then a record without a base date is refused."""
    with _quiet_wfdb():
        record = wfdb_module().rdrecord(
            str(path.with_suffix("") if path.suffix == ".hea" else path))
    names = ["".join(ch for ch in str(n).upper() if ch.isalnum()) for n in record.sig_name]
    units = [str(u).lower() for u in (record.units or [""] * len(names))]
    signal = record.p_signal
    if signal is None or not record.fs:
        raise ValueError(f"{path}: no physical signal or sampling frequency")
    start = 0.0
    if record.base_date is None or record.base_time is None:
        if dated:
            raise ValueError(f"{path}: the record has no base date and time; --keep-times "
                             "needs them")
    else:
        import datetime as dt

        start = dt.datetime.combine(record.base_date, record.base_time,
                                    tzinfo=dt.UTC).timestamp()
    t = start + np.arange(signal.shape[0]) / float(record.fs)
    bed = bed or str(record.record_name)
    rows: list[Row] = []
    used = set()
    for metric, wanted in WFDB_CHANNELS.items():
        col = next((names.index(w) for w in wanted if w in names), None)
        if col is None:
            continue
        used.add(col)
        v = signal[:, col].astype(np.float64)
        if metric == "glucose" and "mmol" in units[col]:
            v = v * MG_PER_MMOL
        keep = np.isfinite(v)
        if names[col].startswith("NBP"):  # sample-and-hold: the measurement, once
            prev = np.concatenate(([np.nan], v[:-1]))
            keep &= v != prev
        rows.extend((ward, bed, metric, tt, vv)
                    for tt, vv in zip(t[keep].tolist(), v[keep].tolist(), strict=True))
    if not used:
        raise ValueError(f"{path}: no heart rate, blood pressure or glucose channel among "
                         f"{', '.join(record.sig_name)}")
    rows.sort(key=lambda r: r[3])
    return rows, [str(n) for i, n in enumerate(record.sig_name) if i not in used]


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
