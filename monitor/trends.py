"""Per-minute trend of every stream, kept in memory for the station page.

A stream's minute that is still open is a row of per-stream accumulators (the sum and
count of its accepted samples, the newest forecast: value, sd and the time it is for).
A batch folds into them with a few array operations, whatever the number of streams;
only a stream whose minute has turned costs Python work, once a minute. A closed
minute moves to the stream's own ring of compact rows (24 bytes: the minute as int32,
the rest float32), which starts at 16 rows and doubles up to ``hours`` × 60. Memory
grows with the minutes a stream has data for, not with the window: a stream seen
for one minute takes ~0.5 KB, one every minute for 24 h 35 KB, a 15-min CGM's day
2.3 KB. Artifacts and flatlined values never enter the trend.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from monitor.scoring import ARTIFACT, FLATLINE, INVALID, STALE_ORDER, ScoredBatch
from monitor.scoring import _layout as L

MINUTE, MEAN, COUNT, FC, FC_SD, FC_T = range(6)
_NOT_ACCEPTED = STALE_ORDER | INVALID | ARTIFACT | FLATLINE
ROW = np.dtype([("minute", "<i4"), ("mean", "<f4"), ("count", "<f4"), ("fc", "<f4"),
                ("fc_sd", "<f4"), ("fc_dt", "<f4")])  # fc_dt: forecast time − minute start
_FIRST_ROWS = 16
_NO_MINUTE = -(2**62)
_FC_COLS = np.array([L.O_FC, L.O_FC_SD, L.O_FC_T])


class MinuteTrends:
    """Per-minute rows of every stream row of the :class:`StreamTable`."""

    def __init__(self, hours: float = 24.0) -> None:
        self.rows = max(60, int(hours * 60))  # the most rows a stream keeps
        self._rings: list[npt.NDArray[np.void] | None] = []
        self.head = np.zeros(0, dtype=np.int64)  # next write position in the ring
        self.size = np.zeros(0, dtype=np.int64)
        # the open minute of each stream (_NO_MINUTE: none yet)
        self.minute = np.zeros(0, dtype=np.int64)
        self.total = np.zeros(0)
        self.count = np.zeros(0)
        self.fc = np.zeros((0, 3))  # value, sd, time: the newest sample's forecast

    def _grow(self, n: int) -> None:
        old = self.minute.size
        if n <= old:
            return
        new = max(n, 2 * old, 64)
        more = new - old
        self._rings += [None] * more
        self.head = np.concatenate([self.head, np.zeros(more, dtype=np.int64)])
        self.size = np.concatenate([self.size, np.zeros(more, dtype=np.int64)])
        self.minute = np.concatenate([self.minute, np.full(more, _NO_MINUTE, dtype=np.int64)])
        self.total = np.concatenate([self.total, np.zeros(more)])
        self.count = np.concatenate([self.count, np.zeros(more)])
        self.fc = np.concatenate([self.fc, np.full((more, 3), np.nan)])

    def add(self, batch: ScoredBatch) -> None:
        """Fold a scored batch (each stream's accepted samples in time order) in."""
        ok = (batch.status & _NOT_ACCEPTED) == 0
        if not ok.any():
            return
        sid, t, v = batch.sid[ok], batch.t[ok], batch.v[ok]
        self._grow(int(sid.max()) + 1)
        minute = np.floor(t / 60.0).astype(np.int64)
        # runs of one stream and one minute; the batch holds each stream's run together
        brk = np.flatnonzero((sid[1:] != sid[:-1]) | (minute[1:] != minute[:-1])) + 1
        starts = np.concatenate(([0], brk))
        ends = np.concatenate((brk, [sid.size]))
        s, m = sid[starts], minute[starts]
        sums = np.add.reduceat(v, starts)
        ns = ends - starts
        fc = batch.out[np.flatnonzero(ok)[ends - 1][:, None], _FC_COLS]
        # a stream whose minute turned, or with several runs here (each after the first
        # a new minute), goes run by run, in order; the rest at once
        turned = self.minute[s] != m
        if turned.any():
            slow = np.isin(s, s[turned])
            for k in np.flatnonzero(slow).tolist():
                si = int(s[k])
                if self.minute[si] != m[k]:
                    self._turn(si, int(m[k]))
                self.total[si] += sums[k]
                self.count[si] += ns[k]
                self.fc[si] = fc[k]
            fast = ~slow
            s, sums, ns, fc = s[fast], sums[fast], ns[fast], fc[fast]
        self.total[s] += sums
        self.count[s] += ns
        self.fc[s] = fc

    def _turn(self, s: int, minute: int) -> None:
        """Close stream ``s``'s open minute into its ring and open ``minute``."""
        if self.count[s] > 0:
            self._append(s, self._open_row(s))
        self.minute[s] = minute
        self.total[s] = self.count[s] = 0.0
        self.fc[s] = np.nan

    def _open_row(self, s: int) -> tuple[int, float, float, float, float, float]:
        m, n = int(self.minute[s]), float(self.count[s])
        fc, sd, ft = self.fc[s].tolist()
        return (m, float(self.total[s]) / n, n, fc, sd, ft - m * 60.0)

    def _append(self, s: int, row: tuple[int, float, float, float, float, float]) -> None:
        ring = self._rings[s]
        size, h = int(self.size[s]), int(self.head[s])
        if ring is None:
            ring = self._rings[s] = np.zeros(_FIRST_ROWS, dtype=ROW)
        elif size == ring.size and size < self.rows:  # full but allowed to grow: in order
            bigger = np.zeros(min(self.rows, 2 * size), dtype=ROW)
            bigger[:size] = np.roll(ring, -h)
            ring = self._rings[s] = bigger
            h = size
        ring[h] = row
        self.head[s] = (h + 1) % ring.size
        self.size[s] = min(size + 1, ring.size)

    def series(self, s: int, since: float) -> npt.NDArray[np.float64]:
        """Rows of stream ``s`` from ``since`` (epoch seconds) on, oldest first, the open
        minute last: columns MINUTE, MEAN, COUNT, FC, FC_SD, FC_T."""
        if s >= self.minute.size:
            return np.empty((0, 6))
        ring = self._rings[s]
        parts = []
        if ring is not None:
            size, h = int(self.size[s]), int(self.head[s])
            closed = ring[np.arange(h - size, h) % ring.size]
            rows = np.empty((size, 6))
            rows[:, MINUTE] = closed["minute"]
            for col, name in ((MEAN, "mean"), (COUNT, "count"), (FC, "fc"), (FC_SD, "fc_sd"),
                              (FC_T, "fc_dt")):
                rows[:, col] = closed[name]
            rows[:, FC_T] += rows[:, MINUTE] * 60.0
            parts.append(rows)
        if self.count[s] > 0:
            parts.append(np.array([self._open_row(s)], dtype=np.float64))
            parts[-1][0, FC_T] += parts[-1][0, MINUTE] * 60.0
        if not parts:
            return np.empty((0, 6))
        rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
        keep: npt.NDArray[np.float64] = rows[rows[:, MINUTE] * 60.0 >= since]
        return keep

    def nbytes(self) -> int:
        """Bytes of trend data held (the rings and the open minutes)."""
        rings = sum(r.nbytes for r in self._rings if r is not None)
        per_stream = (self.head, self.size, self.minute, self.total, self.count, self.fc)
        return rings + sum(a.nbytes for a in per_stream)
