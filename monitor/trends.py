"""Per-minute trend of every stream, kept in memory for the station page.

Each stream has a ring of per-minute rows: the mean of its accepted samples in that
minute, how many there were, and the newest forecast (value, sd, and the time it is
for). 24 hours of a stream take 1440 rows of 6 floats (69 KB); a 30-bed ward with five
vitals each, 10 MB. Artifacts and flatlined values never enter the trend.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.scoring import ARTIFACT, FLATLINE, INVALID, STALE_ORDER, ScoredBatch
from monitor.scoring import _layout as L

MINUTE, MEAN, COUNT, FC, FC_SD, FC_T = range(6)
_NOT_ACCEPTED = STALE_ORDER | INVALID | ARTIFACT | FLATLINE


class MinuteTrends:
    """Rings of per-minute rows, one per stream row of the :class:`StreamTable`."""

    def __init__(self, hours: float = 24.0) -> None:
        self.rows = max(60, int(hours * 60))
        self.ring = np.full((0, self.rows, 6), np.nan)
        self.head = np.zeros(0, dtype=np.int64)  # next write position
        self.size = np.zeros(0, dtype=np.int64)

    def _grow(self, n: int) -> None:
        old = self.ring.shape[0]
        if n <= old:
            return
        new = max(n, 2 * old, 64)
        ring = np.full((new, self.rows, 6), np.nan)
        ring[:old] = self.ring
        self.ring = ring
        self.head = np.concatenate([self.head, np.zeros(new - old, dtype=np.int64)])
        self.size = np.concatenate([self.size, np.zeros(new - old, dtype=np.int64)])

    def add(self, batch: ScoredBatch) -> None:
        """Fold a scored batch (sorted by stream, then time) into the minute rows."""
        ok = (batch.status & _NOT_ACCEPTED) == 0
        if not ok.any():
            return
        sid, t, v = batch.sid[ok], batch.t[ok], batch.v[ok]
        out = batch.out[ok]
        self._grow(int(sid.max()) + 1)
        minute = np.floor(t / 60.0)
        brk = np.flatnonzero((np.diff(sid) != 0) | (np.diff(minute) != 0)) + 1
        starts = np.concatenate(([0], brk))
        ends = np.concatenate((brk, [sid.size]))
        sums = np.add.reduceat(v, starts)
        last = ends - 1
        for s, m, total, n, i in zip(sid[starts].tolist(), minute[starts].tolist(),
                                     sums.tolist(), (ends - starts).tolist(), last.tolist(),
                                     strict=True):
            row = self._current(s, m)
            if row is None:
                continue
            old_n = 0.0 if math.isnan(row[COUNT]) else row[COUNT]
            old_mean = 0.0 if old_n == 0 else row[MEAN]
            row[MEAN] = (old_mean * old_n + total) / (old_n + n)
            row[COUNT] = old_n + n
            row[MINUTE] = m
            row[FC], row[FC_SD], row[FC_T] = out[i, L.O_FC], out[i, L.O_FC_SD], out[i, L.O_FC_T]

    def _current(self, s: int, minute: float) -> Any:
        """The row for ``minute`` of stream ``s``: the newest one, or a new one."""
        size = int(self.size[s])
        if size:
            newest = self.ring[s, (self.head[s] - 1) % self.rows]
            if newest[MINUTE] == minute:
                return newest
            if newest[MINUTE] > minute:  # an older minute: its row has scrolled on
                return None
        h = int(self.head[s])
        self.ring[s, h] = np.nan
        self.head[s] = (h + 1) % self.rows
        self.size[s] = min(size + 1, self.rows)
        return self.ring[s, h]

    def series(self, s: int, since: float) -> npt.NDArray[np.float64]:
        """Rows of stream ``s`` from ``since`` (epoch seconds) on, oldest first."""
        if s >= self.ring.shape[0] or self.size[s] == 0:
            return np.empty((0, 6))
        size, h = int(self.size[s]), int(self.head[s])
        idx = (np.arange(h - size, h) % self.rows)
        rows = self.ring[s, idx]
        keep: npt.NDArray[np.float64] = rows[rows[:, MINUTE] * 60.0 >= since]
        return keep
