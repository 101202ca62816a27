"""Numba kernels: one call scores a whole micro-batch of samples from many streams.

Private. The plain-Python twin is :mod:`monitor.scoring._reference`; a test checks that
the two agree on random input. The batch arrives sorted by (stream, time) with
``starts`` marking each stream's run, so streams are scored in parallel (``prange``)
and each stream's samples in time order.

Per sample, in order: order check → dropout/restart → flatline → Hampel and rate
artifacts → EWMA innovation z → (accepted only) EWMA, band, grid model → ring window →
outputs. The grid model resamples the stream onto a fixed step (the first sample of
each step, smoothed by a fast EWMA; short gaps are interpolated) and runs an ARIMA(2,1,0)
whose coefficients are re-estimated every step by recursive least squares with
forgetting, giving h-step forecasts with prediction intervals, the time until a
threshold is crossed, and innovations for a two-sided CUSUM.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from monitor.scoring._layout import (
    ARTIFACT,
    BAND_CHANGED,
    DRIFT,
    F_ALPHA,
    F_ALPHA_FAST,
    F_CUS_NEG,
    F_CUS_POS,
    F_D1,
    F_D2,
    F_DT,
    F_EW_MEAN,
    F_EW_VAR,
    F_FAST,
    F_FC,
    F_FC_SD,
    F_FC_T,
    F_FLAT_T0,
    F_GRID_T,
    F_LAST_OK_T,
    F_LAST_OK_X,
    F_LAST_T,
    F_LAST_X,
    F_P11,
    F_P12,
    F_P22,
    F_PHI,
    F_PHI1,
    F_PHI2,
    F_PLO,
    F_SHIFT,
    F_SIG2,
    F_SLOPE,
    F_SUM,
    F_SUMSQ,
    F_THI,
    F_TLO,
    F_Y,
    F_ZINNOV,
    FLATLINE,
    GAP,
    GHIST,
    I_ART_RUN,
    I_BAND,
    I_BUCKET,
    I_FLAT_N,
    I_GHEAD,
    I_GLEN,
    I_HEAD,
    I_LEN,
    I_N,
    I_NGRID,
    I_NOK,
    I_NSW,
    INVALID,
    O_CUSUM,
    O_FC,
    O_FC_SD,
    O_FC_T,
    O_LEVEL,
    O_MEDIAN,
    O_PHI,
    O_PLO,
    O_ROLL_MEAN,
    O_ROLL_SD,
    O_SCORE,
    O_SLOPE,
    O_THI,
    O_TLO,
    O_Z,
    O_ZINNOV,
    P_CUS_H,
    P_CUS_K,
    P_FAST_TAU,
    P_FLAT_S,
    P_GAP_S,
    P_GRID_S,
    P_HAMPEL,
    P_HAMPEL_K,
    P_HI,
    P_HORIZON,
    P_LAMBDA,
    P_LO,
    P_MAD_FLOOR,
    P_MAX_ART,
    P_MAX_RATE,
    P_MED_W,
    P_PHI1_0,
    P_PHI2_0,
    P_RESET_S,
    P_ROLL_T,
    P_TAU,
    P_VAR_FLOOR,
    RING,
    STALE_ORDER,
    WARMUP,
)

WARMUP_N = 3  # accepted samples before the EWMA z is meaningful
WARMUP_GRID = 4  # grid points before forecasts are given
MAX_FILL = 3  # grid steps interpolated across a gap; longer gaps restart the lags
P0 = 10.0  # RLS prior variance of the AR coefficients
SIG2_DECAY = 0.95  # EWMA weight of the innovation variance, per grid step
SQRT2 = math.sqrt(2.0)


@njit(cache=True)
def _median(buf, n):  # type: ignore[no-untyped-def]
    """Median of buf[:n], sorting it in place (n is small)."""
    for i in range(1, n):
        x = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > x:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = x
    if n % 2 == 1:
        return buf[n // 2]
    return 0.5 * (buf[n // 2 - 1] + buf[n // 2])


@njit(cache=True)
def _reset(s, fs, ist):  # type: ignore[no-untyped-def]
    """Restart a stream's models after a long silence; its band (alarm state) is kept."""
    ist[s, I_N] = 0
    ist[s, I_LEN] = 0
    ist[s, I_NSW] = 0
    ist[s, I_NOK] = 0
    ist[s, I_HEAD] = 0
    ist[s, I_NGRID] = 0
    ist[s, I_GLEN] = 0
    ist[s, I_GHEAD] = 0
    ist[s, I_ART_RUN] = 0
    fs[s, F_SUM] = 0.0
    fs[s, F_SUMSQ] = 0.0
    fs[s, F_CUS_POS] = 0.0
    fs[s, F_CUS_NEG] = 0.0
    fs[s, F_FC] = np.nan
    fs[s, F_FC_SD] = np.nan
    fs[s, F_FC_T] = np.nan
    fs[s, F_TLO] = np.inf
    fs[s, F_THI] = np.inf
    fs[s, F_PLO] = np.nan
    fs[s, F_PHI] = np.nan
    fs[s, F_SLOPE] = np.nan
    fs[s, F_ZINNOV] = np.nan


@njit(cache=True)
def _grid_push(s, y, ist, gh):  # type: ignore[no-untyped-def]
    gh[s, ist[s, I_GHEAD]] = y
    ist[s, I_GHEAD] = (ist[s, I_GHEAD] + 1) % GHIST
    if ist[s, I_GLEN] < GHIST:
        ist[s, I_GLEN] += 1


@njit(cache=True)
def _theil_sen(s, ist, gh, grid, scratch):  # type: ignore[no-untyped-def]
    """Median of pairwise slopes over the grid history, per minute."""
    n = ist[s, I_GLEN]
    if n < 3:
        return np.nan
    start = (ist[s, I_GHEAD] - n) % GHIST
    k = 0
    for a in range(n):
        ya = gh[s, (start + a) % GHIST]
        for b in range(a + 1, n):
            scratch[k] = (gh[s, (start + b) % GHIST] - ya) / ((b - a) * grid) * 60.0
            k += 1
    return _median(scratch, k)


@njit(cache=True)
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
    sd = math.sqrt(fs[s, F_SIG2] * var_sum) * scale
    fs[s, F_FC] = y
    fs[s, F_FC_SD] = sd
    fs[s, F_FC_T] = t + h * grid
    fs[s, F_TLO] = tlo
    fs[s, F_THI] = thi
    fs[s, F_PLO] = 0.5 * math.erfc((y - lo) / (sd * SQRT2)) if sd > 0 else np.nan
    fs[s, F_PHI] = 0.5 * math.erfc((hi - y) / (sd * SQRT2)) if sd > 0 else np.nan


@njit(cache=True)
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


@njit(cache=True)
def _grid_update(s, t, fs, ist, gh, p, scratch):  # type: ignore[no-untyped-def]
    """Advance the grid model if ``t`` opened a new grid step; return status flags."""
    grid = p[P_GRID_S]
    b = math.floor(t / grid)
    ynew = fs[s, F_FAST]
    if ist[s, I_NGRID] == 0 or b - ist[s, I_BUCKET] > MAX_FILL:
        ist[s, I_NGRID] = 1
        ist[s, I_GLEN] = 0
        ist[s, I_GHEAD] = 0
        ist[s, I_BUCKET] = b
        fs[s, F_Y] = ynew
        fs[s, F_D1] = 0.0
        fs[s, F_D2] = 0.0
        fs[s, F_GRID_T] = t
        fs[s, F_FC] = np.nan
        fs[s, F_FC_SD] = np.nan
        fs[s, F_FC_T] = np.nan
        fs[s, F_TLO] = np.inf
        fs[s, F_THI] = np.inf
        fs[s, F_PLO] = np.nan
        fs[s, F_PHI] = np.nan
        fs[s, F_SLOPE] = np.nan
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
    fs[s, F_SLOPE] = _theil_sen(s, ist, gh, grid, scratch)
    if ist[s, I_NGRID] >= WARMUP_GRID:
        _forecast(s, t, fs, p)
    return flags


@njit(cache=True)
def _sw_insert(s, x, sw, ist):  # type: ignore[no-untyped-def]
    n = ist[s, I_NSW]
    j = n
    while j > 0 and sw[s, j - 1] > x:
        sw[s, j] = sw[s, j - 1]
        j -= 1
    sw[s, j] = x
    ist[s, I_NSW] = n + 1


@njit(cache=True)
def _sw_remove(s, x, sw, ist):  # type: ignore[no-untyped-def]
    n = ist[s, I_NSW]
    j = 0
    while j < n and sw[s, j] != x:
        j += 1
    for a in range(j, n - 1):
        sw[s, a] = sw[s, a + 1]
    ist[s, I_NSW] = n - 1


@njit(cache=True)
def _sw_median(s, sw, n):  # type: ignore[no-untyped-def]
    if n % 2 == 1:
        return sw[s, n // 2]
    return 0.5 * (sw[s, n // 2 - 1] + sw[s, n // 2])


@njit(cache=True)
def _sw_mad(s, sw, n, med):  # type: ignore[no-untyped-def]
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


@njit(cache=True)
def _ring_drop(s, j, fs, ist, rx, rok):  # type: ignore[no-untyped-def]
    if rok[s, j]:
        d = rx[s, j] - fs[s, F_SHIFT]
        fs[s, F_SUM] -= d
        fs[s, F_SUMSQ] -= d * d
        ist[s, I_NOK] -= 1
        if ist[s, I_NOK] == 0:
            fs[s, F_SUM] = 0.0
            fs[s, F_SUMSQ] = 0.0


@njit(cache=True)
def _ring_add(s, t, x, ok, fs, ist, rt, rx, rok, sw, w, roll_t):  # type: ignore[no-untyped-def]
    """Append to the ring; evict by capacity and by time; keep the accepted sums and the
    sorted window of the newest min(w, len) raw values."""
    n = ist[s, I_LEN]
    head = ist[s, I_HEAD]
    if n == RING:  # the oldest is never in the window (w < RING)
        _ring_drop(s, (head - n) % RING, fs, ist, rx, rok)
        n -= 1
    if ist[s, I_NSW] == w:
        _sw_remove(s, rx[s, (head - w) % RING], sw, ist)
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
    head = (head + 1) % RING
    n += 1
    while n > 1:
        old = (head - n) % RING
        if rt[s, old] >= t - roll_t:
            break
        if n <= ist[s, I_NSW]:  # every live entry is in the window, the oldest too
            _sw_remove(s, rx[s, old], sw, ist)
        _ring_drop(s, old, fs, ist, rx, rok)
        n -= 1
    ist[s, I_LEN] = n
    ist[s, I_HEAD] = head
    if head == 0:  # once per lap, re-centre on the newest value and recompute exactly
        if ok:
            fs[s, F_SHIFT] = x
        sm = 0.0
        sq = 0.0
        for a in range(n):
            j = (head - n + a) % RING
            if rok[s, j]:
                d = rx[s, j] - fs[s, F_SHIFT]
                sm += d
                sq += d * d
        fs[s, F_SUM] = sm
        fs[s, F_SUMSQ] = sq


@njit(cache=True, inline="always")
def _step(i, s, m, t, x, fs, ist, rt, rx, rok, sw, gh, params, edges, upper, n_edges,  # type: ignore[no-untyped-def]
          out, band_out, prev_out, status, scratch):
    p = params[m]
    prev_out[i] = ist[s, I_BAND]
    if not (math.isfinite(t) and math.isfinite(x)):
        status[i] = INVALID
        band_out[i] = ist[s, I_BAND]
        out[i, :] = np.nan
        return
    seen = not math.isnan(fs[s, F_LAST_T])
    if seen and t <= fs[s, F_LAST_T]:
        status[i] = STALE_ORDER
        band_out[i] = ist[s, I_BAND]
        out[i, :] = np.nan
        return
    if not seen:  # a new stream starts from the metric's prior dynamics
        fs[s, F_PHI1] = p[P_PHI1_0]
        fs[s, F_PHI2] = p[P_PHI2_0]
    flags = 0
    if seen and t - fs[s, F_LAST_T] > p[P_GAP_S]:
        flags |= GAP
    if seen and t - fs[s, F_LAST_T] > p[P_RESET_S]:
        _reset(s, fs, ist)

    # flatline: identical raw values for too long
    if seen and x == fs[s, F_LAST_X]:
        ist[s, I_FLAT_N] += 1
    else:
        ist[s, I_FLAT_N] = 0
        fs[s, F_FLAT_T0] = t
    flat = ist[s, I_FLAT_N] >= 2 and t - fs[s, F_FLAT_T0] >= p[P_FLAT_S]

    # Hampel: median and MAD of the last W raw samples, before this one
    w = int(p[P_MED_W])
    nmed = ist[s, I_NSW]  # == min(w, ring length)
    med = np.nan
    artifact = False
    if nmed > 0:
        med = _sw_median(s, sw, nmed)
        dev = abs(x - med)
        # the threshold is at least k * floor: below that the MAD cannot matter
        if (not flat and p[P_HAMPEL] > 0 and nmed >= max(3, w // 2)
                and dev > p[P_HAMPEL_K] * p[P_MAD_FLOOR]):
            mad = _sw_mad(s, sw, nmed, med)
            if dev > p[P_HAMPEL_K] * max(1.4826 * mad, p[P_MAD_FLOOR]):
                artifact = True
    if not flat and not artifact and ist[s, I_N] > 0 and not math.isinf(p[P_MAX_RATE]):
        dto = t - fs[s, F_LAST_OK_T]
        if 0.0 < dto <= p[P_GAP_S] and abs(x - fs[s, F_LAST_OK_X]) / dto > p[P_MAX_RATE]:
            artifact = True
    if artifact:
        ist[s, I_ART_RUN] += 1
        if ist[s, I_ART_RUN] > p[P_MAX_ART]:  # sustained: it is the patient, not the sensor
            artifact = False
    if not artifact:
        ist[s, I_ART_RUN] = 0

    n = ist[s, I_N]
    z = np.nan
    if n >= WARMUP_N:
        z = (x - fs[s, F_EW_MEAN]) / math.sqrt(fs[s, F_EW_VAR] + p[P_VAR_FLOOR])
    else:
        flags |= WARMUP

    accepted = not artifact and not flat
    if artifact:
        flags |= ARTIFACT
    if flat:
        flags |= FLATLINE
    cus = 0.0
    if accepted:
        if n == 0:
            fs[s, F_EW_MEAN] = x
            fs[s, F_EW_VAR] = 0.0
            fs[s, F_FAST] = x
        else:
            dt = t - fs[s, F_LAST_OK_T]
            if dt != fs[s, F_DT]:  # regular sampling repeats dt: reuse the weights
                fs[s, F_DT] = dt
                fs[s, F_ALPHA] = 1.0 - math.exp(-dt / p[P_TAU])
                fs[s, F_ALPHA_FAST] = 1.0 - math.exp(-dt / p[P_FAST_TAU])
            alpha = fs[s, F_ALPHA]
            diff = x - fs[s, F_EW_MEAN]
            incr = alpha * diff
            fs[s, F_EW_MEAN] += incr
            fs[s, F_EW_VAR] = (1.0 - alpha) * (fs[s, F_EW_VAR] + diff * incr)
            fs[s, F_FAST] += fs[s, F_ALPHA_FAST] * (x - fs[s, F_FAST])
        ist[s, I_N] = n + 1
        fs[s, F_LAST_OK_X] = x
        fs[s, F_LAST_OK_T] = t
        b = 0
        for k in range(n_edges[m]):
            e = edges[m, k]
            if x > e or (upper[m, k] and x == e):
                b += 1
        if b != ist[s, I_BAND]:
            ist[s, I_BAND] = b
            flags |= BAND_CHANGED
        flags |= _grid_update(s, t, fs, ist, gh, p, scratch)
        cus = max(fs[s, F_CUS_POS], fs[s, F_CUS_NEG])
        if flags & DRIFT:  # decided: start accumulating afresh
            fs[s, F_CUS_POS] = 0.0
            fs[s, F_CUS_NEG] = 0.0
    else:
        cus = max(fs[s, F_CUS_POS], fs[s, F_CUS_NEG])

    _ring_add(s, t, x, accepted, fs, ist, rt, rx, rok, sw, w, p[P_ROLL_T])
    fs[s, F_LAST_T] = t
    fs[s, F_LAST_X] = x

    # outputs
    if math.isnan(z):
        out[i, O_SCORE] = np.nan
    else:
        p_z = math.erfc(abs(z) / SQRT2)
        p_c = math.exp(-cus) if cus > 0.0 else 1.0  # P(CUSUM >= c), no change, k = 0.5
        out[i, O_SCORE] = 1.0 - min(1.0, 2.0 * min(p_z, p_c))
    out[i, O_LEVEL] = fs[s, F_EW_MEAN] if ist[s, I_N] > 0 else np.nan
    nok = ist[s, I_NOK]
    if nok > 0:
        mean = fs[s, F_SUM] / nok
        out[i, O_ROLL_MEAN] = fs[s, F_SHIFT] + mean
        out[i, O_ROLL_SD] = math.sqrt(max(0.0, fs[s, F_SUMSQ] / nok - mean * mean))
    else:
        out[i, O_ROLL_MEAN] = np.nan
        out[i, O_ROLL_SD] = np.nan
    out[i, O_MEDIAN] = med
    out[i, O_SLOPE] = fs[s, F_SLOPE]
    out[i, O_FC] = fs[s, F_FC]
    out[i, O_FC_SD] = fs[s, F_FC_SD]
    out[i, O_FC_T] = fs[s, F_FC_T]
    since = t - fs[s, F_GRID_T]
    out[i, O_TLO] = max(0.0, fs[s, F_TLO] - since)
    out[i, O_PLO] = fs[s, F_PLO]
    out[i, O_THI] = max(0.0, fs[s, F_THI] - since)
    out[i, O_PHI] = fs[s, F_PHI]
    out[i, O_Z] = z
    out[i, O_ZINNOV] = fs[s, F_ZINNOV]
    out[i, O_CUSUM] = cus
    band_out[i] = ist[s, I_BAND]
    status[i] = flags


@njit(cache=True)
def score_batch(starts, sid, metric, t, v, fs, ist, rt, rx, rok, sw, gh,  # type: ignore[no-untyped-def]
                params, edges, upper, n_edges, out, band_out, prev_out, status):
    """Score samples sorted by (stream, time); ``starts`` bounds each stream's run."""
    scratch = np.empty(GHIST * GHIST)
    for g in range(starts.shape[0] - 1):
        for i in range(starts[g], starts[g + 1]):
            _step(i, sid[i], metric[i], t[i], v[i], fs, ist, rt, rx, rok, sw, gh, params,
                  edges, upper, n_edges, out, band_out, prev_out, status, scratch)


@njit(cache=True, parallel=True)
def score_batch_parallel(starts, sid, metric, t, v, fs, ist, rt, rx, rok, sw, gh,  # type: ignore[no-untyped-def]
                         params, edges, upper, n_edges, out, band_out, prev_out, status):
    """:func:`score_batch` with streams spread over threads (large batches only: waking
    the worker threads costs more than a small live micro-batch takes)."""
    for g in prange(starts.shape[0] - 1):
        scratch = np.empty(GHIST * GHIST)
        for i in range(starts[g], starts[g + 1]):
            _step(i, sid[i], metric[i], t[i], v[i], fs, ist, rt, rx, rok, sw, gh, params,
                  edges, upper, n_edges, out, band_out, prev_out, status, scratch)
