"""Numba kernels: one call scores a whole micro-batch of samples from many streams.

Private. Each kernel has a plain-Python twin in :mod:`monitor.scoring._reference` and a
test that the two agree on random input.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# status codes per sample
SCORED = 0
STALE_ORDER = 1  # t <= the stream's last t: out of order or duplicate; state untouched
BAND_CHANGED = 2

WARMUP = 3  # samples before a stream's score is meaningful


@njit(cache=True, nogil=True)
def score_batch(  # type: ignore[no-untyped-def]
    sid, metric, t, v,  # the batch, in arrival order
    last_t, n, mean, var, band,  # per-stream state, updated in place
    tau, var_floor, edges, upper, n_edges,  # per-metric tables
    score_out, band_out, prev_out, status_out,  # per-sample results
):
    """Time-aware EWMA level/variance, innovation score in [0, 1] and band per sample.

    The EWMA weight is ``1 - exp(-dt / tau)`` on observation time, so irregular
    sampling and gaps are handled and a replay at any speed gives the same result.
    """
    for i in range(sid.shape[0]):
        s = sid[i]
        m = metric[i]
        x = v[i]
        prev_out[i] = band[s]
        if n[s] > 0 and t[i] <= last_t[s]:
            status_out[i] = STALE_ORDER
            score_out[i] = np.nan
            band_out[i] = band[s]
            continue
        if n[s] == 0:
            mean[s] = x
            var[s] = 0.0
            score_out[i] = np.nan
        else:
            dt = t[i] - last_t[s]
            alpha = 1.0 - math.exp(-dt / tau[m])
            diff = x - mean[s]
            if n[s] >= WARMUP:
                z = abs(diff) / math.sqrt(var[s] + var_floor[m])
                score_out[i] = math.erf(z / math.sqrt(2.0))
            else:
                score_out[i] = np.nan
            incr = alpha * diff
            mean[s] += incr
            var[s] = (1.0 - alpha) * (var[s] + diff * incr)
        n[s] += 1
        last_t[s] = t[i]
        b = 0
        for k in range(n_edges[m]):
            e = edges[m, k]
            if x > e or (upper[m, k] and x == e):
                b += 1
        band_out[i] = b
        if b != band[s]:
            band[s] = b
            status_out[i] = BAND_CHANGED
        else:
            status_out[i] = SCORED
