"""Numba kernels of the forecasting grid: RLS-ARIMA(2,1,0), forecast, crossings, slope.

Private (see :mod:`monitor.scoring._kernels`). The stream is sampled onto a fixed step
(the first sample of each step, smoothed by a fast EWMA; short gaps are interpolated) and
an ARIMA(2,1,0) is re-estimated at every step by recursive least squares with forgetting.
"""

from __future__ import annotations

import math

import numpy as np

from monitor.scoring._jit import helper, u
from monitor.scoring._layout import (
    DRIFT,
    F_CUS_NEG,
    F_CUS_POS,
    F_D1,
    F_D2,
    F_FAST,
    F_FC,
    F_FC_SD,
    F_FC_T,
    F_GRID_T,
    F_P11,
    F_P12,
    F_P22,
    F_PHI,
    F_PHI1,
    F_PHI2,
    F_PLO,
    F_SIG2,
    F_SLOPE,
    F_THI,
    F_TLO,
    F_TREND,
    F_Y,
    F_ZINNOV,
    GHIST,
    I_BUCKET,
    I_GHEAD,
    I_GLEN,
    I_NGRID,
    P_CUS_H,
    P_CUS_K,
    P_GRID_S,
    P_HI,
    P_HORIZON,
    P_LAMBDA,
    P_LO,
    P_SLOPE_N,
    P_TREND_S,
    P_TREND_TAU,
    P_VAR_FLOOR,
    PAIRS_N,
)

MAX_FILL = 3  # grid steps interpolated across a gap; longer gaps restart the lags...
FILL_CADENCES = 1.5  # ... unless the stream's own cadence spans more (a 15-min CGM, an
#                      hourly cuff): a gap is judged against how often the stream reports
SLOPE_CADENCES = 3.0  # the slope window spans at least this many of the stream's samples
P0 = 10.0  # RLS prior variance of the AR coefficients
SIG2_DECAY = 0.95  # EWMA weight of the innovation variance, per grid step
WARMUP_GRID = 4  # grid points before forecasts are given
SQRT2 = math.sqrt(2.0)


@helper
def clear_forecast(s, fs):  # type: ignore[no-untyped-def]
    """Forget the forecast, crossings and slope (restart, or a gap too long to bridge)."""
    fs[s, F_FC] = np.nan
    fs[s, F_FC_SD] = np.nan
    fs[s, F_FC_T] = np.nan
    fs[s, F_TLO] = np.inf
    fs[s, F_THI] = np.inf
    fs[s, F_PLO] = np.nan
    fs[s, F_PHI] = np.nan
    fs[s, F_SLOPE] = np.nan
    fs[s, F_TREND] = np.nan


@helper
def _select(buf, n, k):  # type: ignore[no-untyped-def]
    """The k-th smallest of buf[:n], reordering buf in place; on return every buf[:k] is
    <= buf[k].

    Quickselect with a branch-free Lomuto partition (the swap always happens, the index
    moves by the comparison): slopes are noise, so a branching partition mispredicts on
    every other element, which made it 3x slower. A pivot that ends at the bottom of its
    range gathers its ties, so equal values (a perfect ramp) stay O(n).
    """
    lo = 0
    hi = n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        a = buf[lo]
        b = buf[mid]
        c = buf[hi]
        if (a <= b) == (b <= c):  # median of three, moved to hi
            buf[mid] = c
            buf[hi] = b
        elif (b <= a) == (a <= c):
            buf[lo] = c
            buf[hi] = a
        pivot = buf[hi]
        i = lo
        for j in range(lo, hi):
            v = buf[u(j)]
            buf[u(j)] = buf[u(i)]
            buf[u(i)] = v
            i += v < pivot
        buf[hi] = buf[i]
        buf[i] = pivot
        if k < i:
            hi = i - 1
        elif i > lo:
            if k == i:
                return pivot
            lo = i + 1
        else:  # nothing below the pivot: gather its ties; a run of them ends the search
            e = i + 1
            for j in range(i + 1, hi + 1):
                v = buf[u(j)]
                buf[u(j)] = buf[u(e)]
                buf[u(e)] = v
                e += v == pivot
            if k < e:
                return pivot
            lo = e
    return buf[k]


@helper
def _median(buf, n):  # type: ignore[no-untyped-def]
    """Median of buf[:n], reordering it in place: O(n), not a sort (n is up to 66)."""
    upper = _select(buf, n, n // 2)
    if n % 2 == 1:
        return upper
    lower = buf[0]
    for i in range(1, n // 2):
        lower = max(lower, buf[u(i)])
    return 0.5 * (lower + upper)


@helper
def _grid_push(s, y, ist, gh):  # type: ignore[no-untyped-def]
    gh[s, ist[s, I_GHEAD]] = y
    ist[s, I_GHEAD] = (ist[s, I_GHEAD] + 1) % GHIST
    if ist[s, I_GLEN] < GHIST:
        ist[s, I_GLEN] += 1


@helper
def slope_points(p, cad):  # type: ignore[no-untyped-def]
    """Grid points in the slope window: P_SLOPE_N, or enough to span SLOPE_CADENCES of the
    stream's samples (sparse streams: interpolated points carry no news), at most GHIST."""
    n = int(p[P_SLOPE_N])
    if cad == cad:
        n = max(n, math.ceil(SLOPE_CADENCES * cad / p[P_GRID_S]) + 1)
    return min(n, GHIST)


@helper
def _theil_sen(s, fs, ist, gh, p, scratch, cad):  # type: ignore[no-untyped-def]
    """Over the newest grid values of the slope window: the median of pairwise slopes, per
    minute, into F_SLOPE; Kendall's tau (rising minus falling pairs, over all pairs) into
    F_TREND."""
    n = min(ist[s, I_GLEN], slope_points(p, cad))
    if n < 3:
        fs[s, F_SLOPE] = np.nan
        fs[s, F_TREND] = np.nan
        return
    ys = scratch[PAIRS_N:]  # the window in time order, after the pairs' room
    j = ist[s, I_GHEAD] - n
    if j < 0:
        j += GHIST
    for a in range(n):
        ys[a] = gh[s, j]
        j += 1
        if j == GHIST:
            j = 0
    per_min = 60.0 / p[P_GRID_S]
    k = 0
    sign = 0
    for lag in range(1, n):  # pairs by lag: one division per lag, not per pair
        f = per_min / lag
        for a in range(n - lag):
            d = ys[u(a + lag)] - ys[u(a)]
            sign += (d > 0.0) - (d < 0.0)
            scratch[u(k)] = d * f
            k += 1
    fs[s, F_TREND] = sign / k
    fs[s, F_SLOPE] = _median(scratch, k)


@helper
def _forecast(s, t, fs, p):  # type: ignore[no-untyped-def]
    """h-step ARIMA(2,1,0) forecast, its sd, and threshold crossings, from grid state."""
    grid = p[P_GRID_S]
    h = int(p[P_HORIZON])
    scale = math.sqrt(p[P_VAR_FLOOR])
    phi1 = fs[s, F_PHI1]
    phi2 = fs[s, F_PHI2]
    lo = p[P_LO]
    hi = p[P_HI]
    d1 = fs[s, F_D1] / scale
    d2 = fs[s, F_D2] / scale
    y = fs[s, F_Y]
    tlo = 0.0 if y < lo else np.inf
    thi = 0.0 if y > hi else np.inf
    a1 = 1.0  # a_{j-1}: MA(inf) weights of the AR part
    a2 = 0.0
    psi = 1.0  # psi_{j-1}: weights of the integrated process
    var_sum = 0.0
    for j in range(1, h + 1):
        dn = phi1 * d1 + phi2 * d2
        d2 = d1
        d1 = dn
        yn = y + dn * scale
        if tlo == np.inf and yn < lo:
            tlo = (j - 1 + (y - lo) / (y - yn)) * grid
        if thi == np.inf and yn > hi:
            thi = (j - 1 + (hi - y) / (yn - y)) * grid
        y = yn
        var_sum += psi * psi
        a = phi1 * a1 + phi2 * a2
        a2 = a1
        a1 = a
        psi += a
    # a monotone trend along its robust slope (per minute), up to P_TREND_S ahead
    slope = fs[s, F_SLOPE]
    tau = fs[s, F_TREND]
    y0 = fs[s, F_Y]
    reach = p[P_TREND_S]
    if reach > 0.0 and slope == slope and abs(tau) >= p[P_TREND_TAU]:
        if slope < 0.0 and tau < 0.0 and y0 > lo:
            tt = (y0 - lo) / -slope * 60.0
            if tt <= reach and tt < tlo:
                tlo = tt
        if slope > 0.0 and tau > 0.0 and y0 < hi:
            tt = (hi - y0) / slope * 60.0
            if tt <= reach and tt < thi:
                thi = tt
    sd = math.sqrt(fs[s, F_SIG2] * var_sum) * scale
    fs[s, F_FC] = y
    fs[s, F_FC_SD] = sd
    fs[s, F_FC_T] = t + h * grid
    fs[s, F_TLO] = tlo
    fs[s, F_THI] = thi
    fs[s, F_PLO] = 0.5 * math.erfc((y - lo) / (sd * SQRT2)) if sd > 0 else np.nan
    fs[s, F_PHI] = 0.5 * math.erfc((hi - y) / (sd * SQRT2)) if sd > 0 else np.nan


@helper
def _rls(s, fs, x1, x2, e, lam):  # type: ignore[no-untyped-def]
    """One RLS step on the AR(2) coefficients; P kept symmetric, bounded; AR kept stable."""
    p11 = fs[s, F_P11]
    p12 = fs[s, F_P12]
    p22 = fs[s, F_P22]
    px1 = p11 * x1 + p12 * x2
    px2 = p12 * x1 + p22 * x2
    den = lam + x1 * px1 + x2 * px2
    k1 = px1 / den
    k2 = px2 / den
    phi1 = fs[s, F_PHI1] + k1 * e
    phi2 = fs[s, F_PHI2] + k2 * e
    p11 = (p11 - k1 * px1) / lam
    p12 = (p12 - k1 * px2) / lam
    p22 = (p22 - k2 * px2) / lam
    tr = p11 + p22
    if tr > 2.0 * P0:  # forgetting inflates P when the inputs carry no information
        f = 2.0 * P0 / tr
        p11 *= f
        p12 *= f
        p22 *= f
    if p11 * p22 - p12 * p12 <= 1e-12 or p11 <= 0.0 or p22 <= 0.0:
        p11 = P0
        p22 = P0
        p12 = 0.0
    # stationarity of the AR(2) part: inside the triangle, with a margin
    for _ in range(50):
        if abs(phi2) < 0.95 and phi1 + phi2 < 0.95 and phi2 - phi1 < 0.95:
            break
        phi1 *= 0.9
        phi2 *= 0.9
    fs[s, F_PHI1] = phi1
    fs[s, F_PHI2] = phi2
    fs[s, F_P11] = p11
    fs[s, F_P12] = p12
    fs[s, F_P22] = p22


@helper
def grid_update(s, t, fs, ist, gh, p, scratch, cad):  # type: ignore[no-untyped-def]
    """Advance the grid model if ``t`` opened a new grid step; return status flags.
    ``cad``: the stream's sampling interval (NaN: not known yet)."""
    grid = p[P_GRID_S]
    b = math.floor(t / grid)
    ynew = fs[s, F_FAST]
    fill = MAX_FILL
    if cad == cad:
        fill = max(fill, math.ceil(FILL_CADENCES * cad / grid))
    if ist[s, I_NGRID] == 0 or b - ist[s, I_BUCKET] > fill:
        ist[s, I_NGRID] = 1
        ist[s, I_GLEN] = 0
        ist[s, I_GHEAD] = 0
        ist[s, I_BUCKET] = b
        fs[s, F_Y] = ynew
        fs[s, F_D1] = 0.0
        fs[s, F_D2] = 0.0
        fs[s, F_GRID_T] = t
        clear_forecast(s, fs)
        _grid_push(s, ynew, ist, gh)
        return 0
    k = b - ist[s, I_BUCKET]
    if k <= 0:
        return 0
    y0 = fs[s, F_Y]
    for j in range(1, k):  # interpolate across a short gap: lags advance, nothing is learnt
        yj = y0 + (ynew - y0) * j / k
        fs[s, F_D2] = fs[s, F_D1]
        fs[s, F_D1] = yj - fs[s, F_Y]
        fs[s, F_Y] = yj
        ist[s, I_NGRID] += 1
        _grid_push(s, yj, ist, gh)
    flags = 0
    d = ynew - fs[s, F_Y]
    if ist[s, I_NGRID] >= 3:
        scale = math.sqrt(p[P_VAR_FLOOR])
        x1 = fs[s, F_D1] / scale
        x2 = fs[s, F_D2] / scale
        e = d / scale - (fs[s, F_PHI1] * x1 + fs[s, F_PHI2] * x2)
        z = e / math.sqrt(fs[s, F_SIG2])
        fs[s, F_ZINNOV] = z
        kc = p[P_CUS_K]
        fs[s, F_CUS_POS] = max(0.0, fs[s, F_CUS_POS] + z - kc)
        fs[s, F_CUS_NEG] = max(0.0, fs[s, F_CUS_NEG] - z - kc)
        if fs[s, F_CUS_POS] > p[P_CUS_H] or fs[s, F_CUS_NEG] > p[P_CUS_H]:
            flags |= DRIFT
        fs[s, F_SIG2] = max(1e-4, SIG2_DECAY * fs[s, F_SIG2] + (1.0 - SIG2_DECAY) * e * e)
        _rls(s, fs, x1, x2, e, p[P_LAMBDA])
    fs[s, F_D2] = fs[s, F_D1]
    fs[s, F_D1] = d
    fs[s, F_Y] = ynew
    fs[s, F_GRID_T] = t
    ist[s, I_NGRID] += 1
    ist[s, I_BUCKET] = b
    _grid_push(s, ynew, ist, gh)
    _theil_sen(s, fs, ist, gh, p, scratch, cad)
    if ist[s, I_NGRID] >= WARMUP_GRID:
        _forecast(s, t, fs, p)
    return flags
