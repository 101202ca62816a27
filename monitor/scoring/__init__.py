"""Per-stream state in numpy arrays, scored a micro-batch at a time by Numba kernels.

A *stream* is one (ward, bed, metric). :class:`StreamTable` gives each stream a row in
a struct of arrays that grows as streams appear; :class:`Scorer` runs a whole batch of
samples from many streams through one kernel call. What each sample gets back is in
:class:`ScoredBatch`; the columns and status flags are in :mod:`monitor.scoring._layout`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.rules import rule_tables
from monitor.scoring import _cache, aot
from monitor.scoring import _layout as L
from monitor.scoring._layout import (
    ARTIFACT,
    BAND_CHANGED,
    DRIFT,
    FLATLINE,
    GAP,
    INVALID,
    SCRATCH_N,
    STALE_ORDER,
    WARMUP,
)
from monitor.scoring.params import GENERIC, MetricParams, param_table

__all__ = ["ARTIFACT", "BAND_CHANGED", "DRIFT", "FLATLINE", "GAP", "GENERIC", "INVALID",
           "KERNELS", "STALE_ORDER",
           "WARMUP", "ScoredBatch", "Scorer", "StreamTable", "jit_kernels"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

log = logging.getLogger(__name__)


def jit_kernels() -> aot.Kernels:
    """The live kernels from Numba's JIT (its on-disk cache kept consistent)."""
    _cache.drop_stale()
    from monitor.scoring._kernels import in_order, score_batch

    return aot.Kernels(in_order, score_batch, "Numba JIT")


def _live_kernels() -> aot.Kernels:
    """Compiled ahead if built for these sources (``monitor.scoring.aot``), else the JIT's.
    ``WARDWATCH_KERNELS=jit`` asks for the JIT's."""
    if os.environ.get("WARDWATCH_KERNELS", "").lower() != "jit":
        try:
            compiled = aot.load()
        except (ImportError, OSError) as exc:
            log.warning("compiled-ahead kernels not loaded (%s); using Numba's JIT", exc)
        else:
            if compiled is not None:
                return compiled
    return jit_kernels()


#: the kernels the live path runs (Scorer's default)
KERNELS = _live_kernels()


@functools.cache
def _parallel() -> tuple[Callable[..., None], Callable[[], int]]:
    """The parallel kernel (large batches: files and replays; Numba's JIT only) and
    the number of its threads."""
    import numba

    jit_kernels()  # the cache checked first
    from monitor.scoring._kernels import score_batch_parallel

    return score_batch_parallel, numba.get_num_threads

PARALLEL_MIN = 50_000  # samples in a batch before threads pay for themselves

_ARRAYS = ("fs", "ist", "rt", "rx", "rok", "sw", "gh")


class StreamTable:
    """Rows of per-stream state keyed by (ward, bed, metric id); grows by doubling."""

    def __init__(self, capacity: int = 256) -> None:
        self._index: dict[tuple[str, str, int], int] = {}
        self.keys: list[tuple[str, str, int]] = []
        self.wall_seen = np.zeros(capacity)  # wall clock of the last sample received
        # beds, numbered as they appear: each stream's bed, and each bed's stream per
        # metric id (−1: none), for work done per bed with arrays
        self._beds: dict[tuple[str, str], int] = {}
        self.bed_keys: list[tuple[str, str]] = []
        self.bed = np.zeros(capacity, dtype=np.int64)
        self.bed_rows = np.full((64, GENERIC + 1), -1, dtype=np.int64)
        self.fs, self.ist, self.rt, self.rx, self.rok, self.sw, self.gh = _blank(capacity)

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, ward: str, bed: str, metric: int) -> int | None:
        """The row of a stream, or None if it has not been seen."""
        return self._index.get((ward, bed, metric))

    def index(self, ward: str, bed: str, metric: int) -> int:
        """The row of a stream, created on first sight."""
        key = (ward, bed, metric)
        sid = self._index.get(key)
        if sid is None:
            sid = len(self.keys)
            if sid == self.fs.shape[0]:
                self._grow()
            self._index[key] = sid
            self.keys.append(key)
            b = self._beds.setdefault((ward, bed), len(self.bed_keys))
            if b == len(self.bed_keys):
                self.bed_keys.append((ward, bed))
                if b == self.bed_rows.shape[0]:
                    self.bed_rows = np.concatenate([self.bed_rows, np.full_like(self.bed_rows, -1)])
            self.bed[sid] = b
            self.bed_rows[b, metric] = sid
        return sid

    @property
    def band(self) -> I64:
        return self.ist[:, L.I_BAND]

    @property
    def value(self) -> F64:
        """Newest accepted value per stream: artifacts and flatlines never show here."""
        return self.fs[:, L.F_LAST_OK_X]

    @property
    def cadence(self) -> F64:
        """Each stream's running sampling interval (s; NaN until its second sample)."""
        return self.fs[:, L.F_CADENCE]

    @property
    def value_t(self) -> F64:
        return self.fs[:, L.F_LAST_OK_T]

    def _grow(self) -> None:
        old_n = self.fs.shape[0]
        fresh = _blank(old_n * 2)
        for name, new in zip(_ARRAYS, fresh, strict=True):
            new[:old_n] = getattr(self, name)
            setattr(self, name, new)
        wall = np.zeros(old_n * 2)
        wall[:old_n] = self.wall_seen
        self.wall_seen = wall
        self.bed = np.concatenate([self.bed, np.zeros(old_n, dtype=np.int64)])

    def row_state(self, s: int) -> bytes:
        """Stream ``s``'s whole state as bytes (``ROW_BYTES`` of them; see set_row_state)."""
        return b"".join(getattr(self, name)[s].tobytes() for name in _ARRAYS)

    def set_row_state(self, s: int, blob: bytes) -> bool:
        """Load what :meth:`row_state` gave into row ``s``; False if it is not that size
        (another layout: the stream starts afresh)."""
        if len(blob) != ROW_BYTES:
            return False
        at = 0
        for name, (dtype, shape, size) in zip(_ARRAYS, _ROW_SHAPES, strict=True):
            getattr(self, name)[s] = np.frombuffer(
                blob, dtype=dtype, count=size // dtype.itemsize, offset=at).reshape(shape)
            at += size
        return True

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to resume scoring exactly where it stopped (copies)."""
        n = len(self.keys)
        state: dict[str, Any] = {name: getattr(self, name)[:n].copy() for name in _ARRAYS}
        state["keys"] = list(self.keys)
        return state

    @classmethod
    def restore(cls, state: dict[str, Any]) -> StreamTable:
        keys = [tuple(k) for k in state["keys"]]
        table = cls(capacity=max(256, len(keys)))
        for k in keys:
            table.index(str(k[0]), str(k[1]), int(k[2]))
        n = len(keys)
        for name in _ARRAYS:
            getattr(table, name)[:n] = state[name]
        return table


def _blank(n: int) -> tuple[F64, I64, F64, F64, npt.NDArray[np.bool_], F64, F64]:
    fs = np.zeros((n, L.NF))
    fs[:, L.F_LAST_T] = fs[:, L.F_LAST_X] = fs[:, L.F_LAST_OK_X] = fs[:, L.F_LAST_OK_T] = np.nan
    fs[:, L.F_SIG2] = 1.0
    fs[:, L.F_P11] = fs[:, L.F_P22] = 10.0
    for col in (L.F_FC, L.F_FC_SD, L.F_FC_T, L.F_PLO, L.F_PHI, L.F_SLOPE, L.F_ZINNOV,
                L.F_CADENCE):
        fs[:, col] = np.nan
    fs[:, L.F_TLO] = fs[:, L.F_THI] = np.inf
    ist = np.zeros((n, L.NI), dtype=np.int64)
    ist[:, L.I_BAND] = -1
    return (fs, ist, np.zeros((n, L.RING)), np.zeros((n, L.RING)),
            np.zeros((n, L.RING), dtype=np.bool_), np.zeros((n, L.WMAX)), np.zeros((n, L.GHIST)))


_ROW_SHAPES = [(a.dtype, a.shape[1:], a[0].nbytes) for a in _blank(1)]
#: bytes of one stream's state (what the model checkpoint stores per stream)
ROW_BYTES = sum(size for _, _, size in _ROW_SHAPES)


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """A micro-batch after scoring, sorted by (stream, time)."""

    sid: I64
    metric: I64
    t: F64
    v: F64
    out: F64  # (n, NO): see the O_* columns in monitor.scoring._layout
    band: I64  # the stream's band after this sample
    status: I64  # bitmask of STALE_ORDER, ARTIFACT, FLATLINE, GAP, BAND_CHANGED, ...

    def __len__(self) -> int:
        return int(self.sid.shape[0])

    @property
    def score(self) -> F64:
        return self.out[:, L.O_SCORE]

    @property
    def forecast(self) -> F64:
        return self.out[:, L.O_FC]

    def has(self, flag: int) -> npt.NDArray[np.bool_]:
        flagged: npt.NDArray[np.bool_] = (self.status & flag) != 0
        return flagged


class Scorer:
    """Scores batches of samples against a :class:`StreamTable` with one kernel call."""

    def __init__(self, streams: StreamTable | None = None, *,
                 params: dict[int, MetricParams] | None = None,
                 kernels: aot.Kernels | None = None) -> None:
        self.streams = streams if streams is not None else StreamTable()
        self.kernels = kernels or KERNELS
        tables = rule_tables()
        pad = ((0, 1), (0, 0))  # the generic metric has no band rule
        self.edges = np.pad(tables.edges, pad)
        self.upper = np.pad(tables.upper, pad)
        self.n_edges = np.pad(tables.n_edges, (0, 1))
        self.params = param_table(params)
        assert self.params.shape[0] == GENERIC + 1
        self._scratch = np.empty(SCRATCH_N)

    def warm_up(self) -> None:
        """Compile (or load from the cache) the live kernel on a throwaway table.

        The first compile takes seconds; paying it before taking traffic keeps the first
        live batch from stalling. The parallel kernel compiles on first large batch.
        """
        scratch = Scorer(StreamTable(capacity=8), kernels=self.kernels)
        ids = np.arange(len(self.n_edges), dtype=np.int64)
        sid = np.array([scratch.streams.index("warm-up", "0", int(m)) for m in ids])
        scratch.score(sid, ids, np.ones(ids.size), np.full(ids.size, 80.0), 0.0)

    def score(self, sid: I64, metric: I64, t: F64, v: F64, now: float,
              msg: I64 | None = None) -> ScoredBatch:
        """Run one batch through the kernel, each stream's samples in time order.

        A sample at or before its stream's newest is kept for history but does not move
        the stream's state (``STALE_ORDER``). ``msg``: each sample's message, in arrival
        order; then a stream's messages are taken in that order, each one's samples in
        time order, so a sample older than one of an earlier message is old, as it would
        be had the two come in separate batches: the outcome does not depend on how the
        messages were cut into batches (a replay after a restart or a takeover ends in
        the same state). Without it, the whole batch is one message. A batch already in
        (stream, time) order is not copied: the result shares ``sid``, ``metric``, ``t``
        and ``v`` with the caller.
        """
        sid = np.ascontiguousarray(sid, dtype=np.int64)
        metric = np.ascontiguousarray(metric, dtype=np.int64)
        t = np.ascontiguousarray(t, dtype=np.float64)
        v = np.ascontiguousarray(v, dtype=np.float64)
        if not self.kernels.in_order(sid, t):
            order = np.lexsort((t, sid) if msg is None else (t, msg, sid))
            sid, metric, t, v = sid[order], metric[order], t[order], v[order]
        k = sid.shape[0]
        cut = np.flatnonzero(np.diff(sid)) + 1
        starts = np.concatenate(([0], cut, [k])).astype(np.int64)
        st = self.streams
        out = np.empty((k, L.NO))
        band = np.empty(k, dtype=np.int64)
        status = np.empty(k, dtype=np.int64)
        args = (starts, sid, metric, t, v, st.fs, st.ist, st.rt, st.rx, st.rok, st.sw, st.gh,
                self.params, self.edges, self.upper, self.n_edges, out, band, status)
        if k >= PARALLEL_MIN and starts.size > 2:  # offline: files, replays
            kernel, threads = _parallel()
            kernel(*args, 16 * threads())
        else:
            self.kernels.score_batch(*args, self._scratch)
        # only a new, usable sample says the stream is alive: a re-sent or refused one
        # must not keep a stale-data alarm quiet
        fresh = (status & (STALE_ORDER | INVALID)) == 0
        st.wall_seen[sid[fresh]] = now
        return ScoredBatch(sid, metric, t, v, out, band, status)
