"""``wardwatch score``: one recorded stream through the live scoring and alarm code.

IN: a CSV with a header and columns ``timestamp,value``; timestamps are epoch seconds or
ISO 8601 / RFC 3339 (no offset: UTC). Values are in the metric's canonical unit unless
``unit`` names another accepted UCUM unit. OUT: ``timestamp,value,score,forecast,alert``
in the input's row order; ``forecast`` is the value predicted at the metric's horizon
(empty while warming up), ``alert`` the alarm codes that newly fire at that row: the
live alarm rules and lifecycle (delays, hysteresis), with observation time as the clock.

The whole file is one batch: rows are scored in time order, whatever their order in the
file. Rows whose timestamp or value cannot be read are kept in OUT with empty columns,
and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.errors import WardwatchError
from monitor.lifecycle import AlarmEngine
from monitor.scoring import GENERIC, INVALID, Scorer
from monitor.scoring.params import generic_params
from monitor.timestamps import epoch_seconds, parse_column
from monitor.vitals import METRIC_IDS, METRICS


@dataclass(frozen=True, slots=True)
class ScoreSummary:
    rows: int
    unreadable: int
    alerts: int
    seconds: float


def read_series(src: Path) -> tuple[Any, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A ``timestamp,value`` CSV (gzipped if it ends in ``.gz``): the table as text, epoch
    seconds and values (NaN where a cell cannot be read). Raises :class:`WardwatchError`.

    Read with Arrow's multithreaded CSV reader, both columns as text. A column that Arrow
    converts whole (numbers; RFC 3339 times with their offsets) is taken as converted;
    anything else (naive or odd ISO forms, unreadable cells) goes through
    :func:`~monitor.timestamps.parse_column` and pandas, which read cell by cell."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(src, convert_options=pcsv.ConvertOptions(
            column_types={"timestamp": pa.string(), "value": pa.string()},
            strings_can_be_null=False))
    except (OSError, pa.ArrowException, EOFError) as exc:
        raise WardwatchError(f"cannot read {src}: {exc}") from exc
    missing = {"timestamp", "value"} - set(table.column_names)
    if missing:
        raise WardwatchError(f"{src}: missing column(s) {', '.join(sorted(missing))}")
    table = table.select(["timestamp", "value"])
    return table, _seconds(table["timestamp"]), _values(table["value"])


def _seconds(col: Any) -> npt.NDArray[np.float64]:
    """Epoch seconds of a text column. Arrow converts a column whole when every cell is
    a number, or every cell an RFC 3339 time with its offset; any other column (naive
    or odd ISO forms, unreadable cells) is read cell by cell by
    :func:`~monitor.timestamps.parse_column`, which decides the same where both can."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return epoch_seconds(_floats(col))
    except pa.ArrowInvalid:  # not every cell a number
        pass
    try:
        micros = pc.cast(pc.cast(col, pa.timestamp("us", tz="UTC")), pa.int64())
    except pa.ArrowInvalid:  # nor every cell an RFC 3339 time: cell by cell
        return parse_column(col.to_pandas())
    secs: npt.NDArray[np.float64] = micros.to_numpy(zero_copy_only=False) / 1e6
    return secs


def _values(col: Any) -> npt.NDArray[np.float64]:
    """A text column as numbers, NaN where a cell cannot be read."""
    import pyarrow as pa

    try:
        out = _floats(col)
    except pa.ArrowInvalid:  # a cell that is not a number: pandas reads cell by cell
        import pandas as pd

        coerced: npt.NDArray[np.float64] = pd.to_numeric(
            col.to_pandas(), errors="coerce").to_numpy(dtype=np.float64)
        return coerced
    return out


def _floats(col: Any) -> npt.NDArray[np.float64]:
    """A text column converted whole by Arrow (an empty cell: NaN); raises
    ``pyarrow.ArrowInvalid`` if any cell is not a number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    blank = pc.equal(pc.utf8_trim_whitespace(col), "")
    out = pc.cast(pc.if_else(blank, None, col), pa.float64())
    arr: npt.NDArray[np.float64] = out.to_numpy(zero_copy_only=False).astype(np.float64)
    return arr


def _write(dst: Path, table: Any, score: npt.NDArray[np.float64],
           forecast: npt.NDArray[np.float64], alerts: dict[int, str]) -> None:
    """OUT, with Arrow's CSV writer: no quotes unless a cell needs them; NaN as empty.
    ``alerts``: the codes of the few rows that have any."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    codes = sorted(set(alerts.values()))
    index = np.zeros(n, dtype=np.int32)  # 0: "" (no alert)
    if alerts:
        at = {c: i + 1 for i, c in enumerate(codes)}
        index[np.fromiter(alerts.keys(), np.int64, len(alerts))] = [at[c] for c in alerts.values()]
    alert = pc.cast(pa.DictionaryArray.from_arrays(index, pa.array(["", *codes])), pa.string())
    out = pa.table({
        "timestamp": table["timestamp"], "value": table["value"],
        "score": pa.array(np.round(score, 4), from_pandas=True),
        "forecast": pa.array(np.round(forecast, 2), from_pandas=True),
        "alert": alert,
    })
    try:
        for quoting in ("none", "needed"):
            with open(dst, "wb") as fh:
                fh.write(",".join(out.column_names).encode() + b"\n")
                try:
                    _write_chunks(out, fh, quoting)
                    break
                except pa.ArrowInvalid:  # a cell with a comma, quote or line break
                    if quoting == "needed":
                        raise
    except (OSError, pa.ArrowException) as exc:
        raise WardwatchError(f"cannot write {dst}: {exc}") from exc


WRITE_CHUNK = 500_000  # rows formatted per thread at a time


def _write_chunks(table: Any, fh: Any, quoting: str) -> None:
    """Arrow's CSV writer formats on one thread: format chunks of rows on every core
    (Arrow lets go of the GIL), and write them in order, two chunks per core at most
    held in memory."""
    import concurrent.futures
    import io
    import os

    import pyarrow.csv as pcsv

    options = pcsv.WriteOptions(include_header=False, quoting_style=quoting)

    def render(start: int) -> bytes:
        buf = io.BytesIO()
        pcsv.write_csv(table.slice(start, WRITE_CHUNK), buf, options)
        return buf.getvalue()

    starts = range(0, table.num_rows, WRITE_CHUNK)
    workers = max(1, min(os.cpu_count() or 1, len(starts)))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: list[concurrent.futures.Future[bytes]] = []
        for start in starts:
            pending.append(pool.submit(render, start))
            if len(pending) > 2 * workers:
                fh.write(pending.pop(0).result())
        for fut in pending:
            fh.write(fut.result())


def score_csv(metric: str, src: Path, dst: Path, unit: str | None = None, *,
              ack_after: float = 120.0, chunk: int = 250_000) -> ScoreSummary:
    """Score ``src`` as ``metric`` and write the contract's columns to ``dst``.

    ``ack_after``: a modelled responder acknowledges each alarm this many seconds (of
    observation time) after it sounds, so a latched alarm never hides the next episode;
    0: nobody answers. ``chunk``: rows scored at a time (the outcome does not depend on
    it; see :func:`_score_sorted`)."""
    import time

    started = time.perf_counter()
    frame, t, v = read_series(src)
    if metric == "generic":
        mid = GENERIC
        if unit:
            raise WardwatchError("--unit does not apply to --metric generic")
        ok = np.isfinite(t) & np.isfinite(v)
        ts = np.sort(t[ok])
        dt = float(np.median(np.diff(ts))) if ts.size > 2 else 1.0
        dv = np.diff(v[ok][np.argsort(t[ok])])
        noise = float(1.4826 * np.median(np.abs(dv - np.median(dv))) / math.sqrt(2)) \
            if dv.size else 1.0
        scorer = Scorer(params={GENERIC: generic_params(dt, noise)})
    else:
        mid = METRIC_IDS[metric]
        spec = METRICS[mid]
        if unit:
            if unit not in spec.units:
                raise WardwatchError(f"{metric}: unit {unit!r} is not one of "
                                     f"{', '.join(spec.units)}")
            v = v * spec.units[unit]
        scorer = Scorer()
    score, forecast, alerts, fired, unreadable = _score_sorted(scorer, mid, t, v,
                                                               ack_after, chunk)
    _write(dst, frame, score, forecast, alerts)
    return ScoreSummary(len(frame), unreadable, fired, time.perf_counter() - started)


def _score_sorted(scorer: Scorer, mid: int, t: npt.NDArray[np.float64],
                  v: npt.NDArray[np.float64], ack_after: float, chunk: int
                  ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64],
                             dict[int, str], int, int]:
    """Score the rows in time order, ``chunk`` rows at a time, as the daemon
    scores micro-batches (the state carries over: the same outcome as one batch): the
    kernel scores chunk k+1 on another thread (it lets go of the GIL) while the alarm
    engine walks chunk k. The engine reads the stream's cadence from the table, which the
    kernel moves, so it is given a copy of the table as chunk k left it: the output
    never depends on how the two threads interleave.

    Returns score and forecast in file order, the alarm codes of the rows that have any
    (file row → ``;``-joined codes), how many alarms fired and how many rows were
    unreadable."""
    import concurrent.futures
    import copy

    n = t.size
    sid = np.full(n, scorer.streams.index("offline", "1", mid), dtype=np.int64)
    metric = np.full(n, mid, dtype=np.int64)
    order = np.argsort(t, kind="stable")  # NaN times sort last; the kernel ignores them
    # the scorer keeps (stream, time) order too, stably: sorted row j is file row order[j]
    ts, vs = t[order], v[order]
    score = np.empty(n)
    forecast = np.empty(n)
    alerts: dict[int, str] = {}
    fired = unreadable = 0
    engine = AlarmEngine(ack_after=ack_after)
    seen = copy.copy(scorer.streams)  # what the engine reads: shares all but ``fs``
    cuts = list(range(0, n, chunk)) or [0]

    def run(a: int) -> Any:
        b = min(a + chunk, n)
        return scorer.score(sid[a:b], metric[a:b], ts[a:b], vs[a:b], 0.0)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(run, cuts[0])
        for i, a in enumerate(cuts):
            batch = pending.result()
            seen.fs = scorer.streams.fs.copy()
            if i + 1 < len(cuts):
                pending = pool.submit(run, cuts[i + 1])
            rows = order[a:a + len(batch)]
            score[rows] = batch.score
            forecast[rows] = batch.forecast
            unreadable += int(np.count_nonzero(batch.has(INVALID)))
            for j, ev in engine.update(batch, seen):
                if ev.state == "firing":
                    r = int(rows[j])
                    alerts[r] = f"{alerts[r]};{ev.code}" if r in alerts else ev.code
                    fired += 1
    return score, forecast, alerts, fired, unreadable
