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
from monitor.timestamps import parse_column
from monitor.vitals import METRIC_IDS, METRICS


@dataclass(frozen=True, slots=True)
class ScoreSummary:
    rows: int
    unreadable: int
    alerts: int
    seconds: float


def read_series(src: Path) -> tuple[Any, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A ``timestamp,value`` CSV (gzipped if it ends in ``.gz``): the frame as text, epoch
    seconds and values (NaN where a cell cannot be read). Raises :class:`WardwatchError`."""
    import pandas as pd

    try:
        frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    except (OSError, ValueError, EOFError) as exc:
        raise WardwatchError(f"cannot read {src}: {exc}") from exc
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise WardwatchError(f"{src}: missing column(s) {', '.join(sorted(missing))}")
    t = parse_column(frame["timestamp"])
    v = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=np.float64)
    return frame, t, v


def score_csv(metric: str, src: Path, dst: Path, unit: str | None = None, *,
              ack_after: float = 120.0) -> ScoreSummary:
    """Score ``src`` as ``metric`` and write the contract's columns to ``dst``.

    ``ack_after``: a modelled responder acknowledges each alarm this many seconds (of
    observation time) after it sounds, so a latched alarm never hides the next episode;
    0: nobody answers."""
    import time

    import pandas as pd

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
    n = len(frame)
    sid = np.full(n, scorer.streams.index("offline", "1", mid), dtype=np.int64)
    order = np.argsort(t, kind="stable")  # NaN times sort last; the kernel ignores them
    batch = scorer.score(sid, np.full(n, mid, dtype=np.int64), t[order], v[order], 0.0)
    # the scorer sorts by (stream, time) too, stably: batch row j is file row order[j]
    back = order
    score = np.empty(n)
    forecast = np.empty(n)
    score[back] = batch.score
    forecast[back] = batch.forecast
    alerts = [""] * n
    fired = 0
    for j, ev in AlarmEngine(ack_after=ack_after).update(batch, scorer.streams):
        if ev.state == "firing":
            r = int(back[j])
            alerts[r] = f"{alerts[r]};{ev.code}" if alerts[r] else ev.code
            fired += 1
    out = pd.DataFrame({
        "timestamp": frame["timestamp"], "value": frame["value"],
        "score": np.round(score, 4), "forecast": np.round(forecast, 2), "alert": alerts,
    })
    out.to_csv(dst, index=False, na_rep="")
    unreadable = int(np.count_nonzero(batch.has(INVALID)))
    return ScoreSummary(n, unreadable, fired, time.perf_counter() - started)
