"""Per-stream state in numpy arrays, scored a micro-batch at a time by Numba kernels.

A *stream* is one (ward, bed, metric). :class:`StreamTable` gives each stream a row in
a struct of arrays that grows as streams appear; :class:`Scorer` runs a whole batch of
samples from many streams through one kernel call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.rules import rule_tables
from monitor.scoring._kernels import BAND_CHANGED, SCORED, STALE_ORDER, score_batch
from monitor.vitals import METRICS

__all__ = ["BAND_CHANGED", "SCORED", "STALE_ORDER", "ScoredBatch", "Scorer", "StreamTable"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# EWMA time constants (s) and variance floors (unit²) per metric, by METRICS order.
_TAU = {"hr": 300.0, "sbp": 3600.0, "dbp": 3600.0, "map": 3600.0, "glucose": 1800.0}
_VAR_FLOOR = {"hr": 4.0, "sbp": 25.0, "dbp": 16.0, "map": 16.0, "glucose": 25.0}


class StreamTable:
    """Rows of per-stream state keyed by (ward, bed, metric id); grows by doubling."""

    def __init__(self, capacity: int = 256) -> None:
        self._index: dict[tuple[str, str, int], int] = {}
        self.keys: list[tuple[str, str, int]] = []
        self.last_t = np.zeros(capacity)
        self.n = np.zeros(capacity, dtype=np.int64)
        self.mean = np.zeros(capacity)
        self.var = np.zeros(capacity)
        self.band = np.full(capacity, -1, dtype=np.int64)
        self.last_v = np.full(capacity, np.nan)
        self.wall_seen = np.zeros(capacity)  # wall clock of the last sample received

    def __len__(self) -> int:
        return len(self.keys)

    def index(self, ward: str, bed: str, metric: int) -> int:
        """The row of a stream, created on first sight."""
        key = (ward, bed, metric)
        sid = self._index.get(key)
        if sid is None:
            sid = len(self.keys)
            if sid == self.last_t.shape[0]:
                self._grow()
            self._index[key] = sid
            self.keys.append(key)
        return sid

    def _grow(self) -> None:
        for name, fill in (("last_t", 0.0), ("n", 0), ("mean", 0.0), ("var", 0.0),
                           ("band", -1), ("last_v", np.nan), ("wall_seen", 0.0)):
            old = getattr(self, name)
            new = np.full(old.shape[0] * 2, fill, dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """A micro-batch after scoring, ordered by observation time."""

    sid: I64
    metric: I64
    t: F64
    v: F64
    score: F64  # NaN while a stream warms up, and for out-of-order samples
    band: I64
    prev_band: I64  # the stream's band before this sample (-1: none yet)
    status: I64

    def __len__(self) -> int:
        return int(self.sid.shape[0])


class Scorer:
    """Scores batches of samples against a :class:`StreamTable` with one kernel call."""

    def __init__(self, streams: StreamTable | None = None) -> None:
        self.streams = streams if streams is not None else StreamTable()
        self.tables = rule_tables()
        self.tau = np.array([_TAU[m.name] for m in METRICS])
        self.var_floor = np.array([_VAR_FLOOR[m.name] for m in METRICS])

    def score(self, sid: I64, metric: I64, t: F64, v: F64, now: float) -> ScoredBatch:
        """Run one batch through the kernel; samples are taken in observation-time order.

        Sorting by ``t`` (stably) makes out-of-order delivery inside a batch harmless;
        across batches, a sample older than its stream's last one is kept for history
        but does not move the stream's state (``STALE_ORDER``).
        """
        order = np.argsort(t, kind="stable")
        sid, metric, t, v = sid[order], metric[order], t[order], v[order]
        st = self.streams
        k = sid.shape[0]
        score = np.empty(k)
        band = np.empty(k, dtype=np.int64)
        status = np.empty(k, dtype=np.int64)
        prev_band = np.empty(k, dtype=np.int64)
        score_batch(
            sid, metric, t, v,
            st.last_t, st.n, st.mean, st.var, st.band,
            self.tau, self.var_floor, self.tables.edges, self.tables.upper, self.tables.n_edges,
            score, band, prev_band, status,
        )
        fresh = status != STALE_ORDER
        st.last_v[sid[fresh]] = v[fresh]
        st.wall_seen[sid] = now
        return ScoredBatch(sid, metric, t, v, score, band, prev_band, status)
