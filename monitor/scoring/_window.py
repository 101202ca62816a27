"""Numba kernels of the per-stream ring of recent samples and its sorted median window.

Private (see :mod:`monitor.scoring._kernels`). The ring keeps the raw samples of the
rolling window, with running sums of the accepted ones; beside it the newest
``min(w, len)`` raw values are kept sorted, so the median is O(1) and the MAD a merge.
"""

from __future__ import annotations

from monitor.scoring._jit import helper, u
from monitor.scoring._layout import (
    F_SHIFT,
    F_SUM,
    F_SUMSQ,
    I_HEAD,
    I_LEN,
    I_NOK,
    I_NSW,
    RING,
)

MASK = RING - 1  # RING is a power of two: (i - n) & MASK wraps like (i - n) % RING
assert RING & MASK == 0


# Positions in the sorted window are found by counting smaller values over the whole
# window (at most WMAX, branch-free, vectorised) rather than by a search loop whose exit
# the processor mispredicts on every sample.


@helper
def _sw_insert(s, x, sw, ist):  # type: ignore[no-untyped-def]
    n = ist[s, I_NSW]
    q = 0
    for a in range(n):
        q += sw[s, u(a)] < x
    for a in range(n, q, -1):
        sw[s, u(a)] = sw[s, u(a - 1)]
    sw[s, u(q)] = x
    ist[s, I_NSW] = n + 1


@helper
def _sw_remove(s, x, sw, ist):  # type: ignore[no-untyped-def]
    n = ist[s, I_NSW]
    j = 0  # the first x
    for a in range(n):
        j += sw[s, u(a)] < x
    for a in range(j, n - 1):
        sw[s, u(a)] = sw[s, u(a + 1)]
    ist[s, I_NSW] = n - 1


@helper
def _sw_replace(s, old, x, sw, n):  # type: ignore[no-untyped-def]
    """One ``old`` in the sorted window becomes ``x``; only the values between move."""
    j = 0  # the first old
    q = 0  # where x goes once that old is out
    for a in range(n):
        v = sw[s, u(a)]
        j += v < old
        q += v < x
    if old < x:
        q -= 1
    for a in range(j, q):
        sw[s, u(a)] = sw[s, u(a + 1)]
    for a in range(j, q, -1):
        sw[s, u(a)] = sw[s, u(a - 1)]
    sw[s, u(q)] = x


@helper
def sw_median(s, sw, n):  # type: ignore[no-untyped-def]
    if n % 2 == 1:
        return sw[s, n // 2]
    return 0.5 * (sw[s, n // 2 - 1] + sw[s, n // 2])


@helper
def sw_mad(s, sw, n, med):  # type: ignore[no-untyped-def]
    """Median of |window - med|, merging outward from the median of the sorted window."""
    hi = 0
    while hi < n and sw[s, hi] < med:
        hi += 1
    lo = hi - 1
    want = n // 2  # the deviation of rank `want` (and `want - 1` when n is even)
    prev = 0.0
    cur = 0.0
    for _ in range(want + 1):
        prev = cur
        if lo >= 0 and (hi >= n or med - sw[s, lo] <= sw[s, hi] - med):
            cur = med - sw[s, lo]
            lo -= 1
        else:
            cur = sw[s, hi] - med
            hi += 1
    return cur if n % 2 == 1 else 0.5 * (prev + cur)


@helper
def _ring_drop(s, j, fs, ist, rx, rok):  # type: ignore[no-untyped-def]
    if rok[s, j]:
        d = rx[s, j] - fs[s, F_SHIFT]
        fs[s, F_SUM] -= d
        fs[s, F_SUMSQ] -= d * d
        ist[s, I_NOK] -= 1
        if ist[s, I_NOK] == 0:
            fs[s, F_SUM] = 0.0
            fs[s, F_SUMSQ] = 0.0


@helper
def ring_add(s, t, x, ok, fs, ist, rt, rx, rok, sw, w, roll_t):  # type: ignore[no-untyped-def]
    """Append to the ring; evict by capacity and by time; keep the accepted sums and the
    sorted window of the newest min(w, len) raw values.

    The window changes by one replacement when a value leaves it as ``x`` enters (the
    steady state), by an insertion while it fills.
    """
    n = ist[s, I_LEN]
    head = ist[s, I_HEAD]
    if n == RING:  # the oldest is never in the window (w < RING)
        _ring_drop(s, (head - n) & MASK, fs, ist, rx, rok)
        n -= 1
    placed = False  # x is in the window
    while n > 0:  # evict by time (x itself, at t, always stays)
        old = (head - n) & MASK
        if rt[s, old] >= t - roll_t:
            break
        if n <= ist[s, I_NSW]:  # every live entry is in the window, the oldest too
            if placed:
                _sw_remove(s, rx[s, old], sw, ist)
            else:
                _sw_replace(s, rx[s, old], x, sw, ist[s, I_NSW])
                placed = True
        _ring_drop(s, old, fs, ist, rx, rok)
        n -= 1
    if not placed:
        if ist[s, I_NSW] == w:
            _sw_replace(s, rx[s, (head - w) & MASK], x, sw, w)
        else:
            _sw_insert(s, x, sw, ist)
    rt[s, head] = t
    rx[s, head] = x
    rok[s, head] = ok
    if ok:
        if ist[s, I_NOK] == 0:
            fs[s, F_SHIFT] = x
        d = x - fs[s, F_SHIFT]
        fs[s, F_SUM] += d
        fs[s, F_SUMSQ] += d * d
        ist[s, I_NOK] += 1
    head = (head + 1) & MASK
    n += 1
    ist[s, I_LEN] = n
    ist[s, I_HEAD] = head
    if head == 0:  # once per lap, re-centre on the newest value and recompute exactly
        if ok:
            fs[s, F_SHIFT] = x
        sm = 0.0
        sq = 0.0
        for a in range(n):
            j = (head - n + a) & MASK
            if rok[s, j]:
                d = rx[s, j] - fs[s, F_SHIFT]
                sm += d
                sq += d * d
        fs[s, F_SUM] = sm
        fs[s, F_SUMSQ] = sq
