"""Plain-Python twins of the kernels in :mod:`monitor.scoring._kernels` (for tests)."""

from __future__ import annotations

import math
from typing import Any

from monitor.scoring._kernels import BAND_CHANGED, SCORED, STALE_ORDER, WARMUP


def score_batch(*a: Any) -> None:
    """Same arguments and effects as the kernel, one sample at a time in Python."""
    (sid, metric, t, v, last_t, n, mean, var, band, tau, var_floor, edges, upper, n_edges,
     score_out, band_out, prev_out, status_out) = a
    for i in range(len(sid)):
        s, m, x = int(sid[i]), int(metric[i]), float(v[i])
        prev_out[i] = band[s]
        if n[s] > 0 and t[i] <= last_t[s]:
            status_out[i], score_out[i], band_out[i] = STALE_ORDER, math.nan, band[s]
            continue
        score = math.nan
        if n[s] == 0:
            mean[s], var[s] = x, 0.0
        else:
            alpha = 1.0 - math.exp(-(t[i] - last_t[s]) / tau[m])
            diff = x - mean[s]
            if n[s] >= WARMUP:
                z = abs(diff) / math.sqrt(var[s] + var_floor[m])
                score = math.erf(z / math.sqrt(2.0))
            mean[s] += alpha * diff
            var[s] = (1.0 - alpha) * (var[s] + diff * alpha * diff)
        score_out[i] = score
        n[s] += 1
        last_t[s] = t[i]
        b = sum(
            1
            for k in range(n_edges[m])
            if x > edges[m, k] or (upper[m, k] and x == edges[m, k])
        )
        band_out[i] = b
        status_out[i] = BAND_CHANGED if b != band[s] else SCORED
        band[s] = b
