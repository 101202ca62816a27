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

from monitor.scoring._grid import clear_forecast, grid_update
from monitor.scoring._jit import helper, kernel
from monitor.scoring._layout import (
    ARTIFACT,
    BAND_CHANGED,
    DRIFT,
    F_ALPHA,
    F_ALPHA_FAST,
    F_CADENCE,
    F_CUS_NEG,
    F_CUS_POS,
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
    F_PHI,
    F_PHI1,
    F_PHI2,
    F_PLO,
    F_SHIFT,
    F_SLOPE,
    F_SUM,
    F_SUMSQ,
    F_THI,
    F_TLO,
    F_ZINNOV,
    FLATLINE,
    GAP,
    I_ART_RUN,
    I_BAND,
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
    P_DENSE_S,
    P_FAST_TAU,
    P_FLAT_S,
    P_GAP_S,
    P_HAMPEL,
    P_HAMPEL_K,
    P_MAD_FLOOR,
    P_MAX_ART,
    P_MAX_RATE,
    P_MED_W,
    P_PHI1_0,
    P_PHI2_0,
    P_RATE_SPAN,
    P_RESET_S,
    P_ROLL_T,
    P_TAU,
    P_VAR_FLOOR,
    P_ZERO_ART,
    SCRATCH_N,
    STALE_ORDER,
    WARMUP,
)
from monitor.scoring._window import MASK, ring_add, sw_mad, sw_median

__all__ = ["SCRATCH_N", "WARMUP_N", "in_order", "score_batch", "score_batch_parallel",
           "surprise_score"]

WARMUP_N = 3  # accepted samples before the EWMA z is meaningful
SQRT2 = math.sqrt(2.0)
SQRT_PI = math.sqrt(math.pi)
LN10 = math.log(10.0)
LOG10_2 = math.log10(2.0)
S_HALF = 2.0  # surprise (decades) scored 1/2: p = 0.01
# Cadence: a silence of GAP_CADENCES intervals (or the metric's gap_s, if longer) is a
# dropout; the running interval moves by exp(CAD_W * clip(log(dt / cadence), CAD_CLIP)).
GAP_CADENCES = 3.0
CAD_W = 0.2
CAD_CLIP = 1.0
# Below these, erfc(|z| / sqrt 2) and exp(-cusum) exceed 1/2 (by >= 7e-5, so no
# rounding can cross), so neither needs computing for the score: a stable stream's
# samples mostly need one of them or none.
Z_HALF = 0.674  # erfc(0.674 / sqrt 2) = 0.50031
C_HALF = 0.693  # exp(-0.693) = 0.50007


@helper
def update_cadence(cad, dt):  # type: ignore[no-untyped-def]
    """The running sampling interval after one more interval ``dt``: a geometric EWMA
    whose step is clipped, so one gap or one burst moves it by at most ~22%, while a
    device that changes its cadence is followed within ~15 samples."""
    if cad != cad:
        return dt
    if abs(dt - cad) <= 1e-3 * cad:
        return cad
    r = math.log(max(dt, 1e-3 * cad) / cad)
    r = min(CAD_CLIP, max(-CAD_CLIP, r))
    return cad * math.exp(CAD_W * r)


@helper
def ring_before(s, t0, ref_t, ref_x, ist, rt, rx, rok):  # type: ignore[no-untyped-def]
    """The newest accepted (t, x) of the ring at or before ``t0``; (ref_t, ref_x) if none."""
    head = ist[s, I_HEAD]
    for j in range(1, ist[s, I_LEN] + 1):
        k = (head - j) & MASK
        if rok[s, k] and rt[s, k] <= t0:
            return rt[s, k], rx[s, k]
    return ref_t, ref_x


@helper
def surprise_score(az, cus):  # type: ignore[no-untyped-def]
    """The sample's score in [0, 1) from its |EWMA z| and the CUSUM.

    p = min(1, 2 min(p_z, p_c)), p_z = erfc(|z| / sqrt 2) (two-sided normal) and
    p_c = exp(-cus), P(CUSUM >= c) with no change (Siegmund, k = 0.5). The score is the
    surprise s = -log10 p, in decades, squashed as s / (s + S_HALF): 1/2 at p = 0.01,
    0.75 at 1e-6, 0.9 at 1e-18; 0 when p = 1. Monotone in p, so one threshold serves, and
    never exactly 1, so a shift of 10 sd still ranks above one of 6 (a p-value would read
    1.0000 for both). A probability above 1/2 cannot raise the score, so only those that
    may be below 1/2 are computed; erfc's log is taken asymptotically where it underflows.
    """
    s = 0.0
    if az >= Z_HALF:
        x = az / SQRT2  # erfc(26) = 6e-296, still a normal double; beyond, its log
        s = (-math.log10(math.erfc(x)) if x < 26.0
             else (x * x + math.log(x * SQRT_PI)) / LN10)
    if cus >= C_HALF:
        s = max(s, cus / LN10)
    s -= LOG10_2
    return s / (s + S_HALF) if s > 0.0 else 0.0


@helper
def reset_stream(s, fs, ist):  # type: ignore[no-untyped-def]
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
    clear_forecast(s, fs)
    fs[s, F_ZINNOV] = np.nan


@helper
def _step(i, s, m, t, x, fs, ist, rt, rx, rok, sw, gh, params, edges, upper, n_edges,  # type: ignore[no-untyped-def]
          out, band_out, status, scratch):
    p = params[m]
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
    cad = fs[s, F_CADENCE]
    gap = p[P_GAP_S]
    if seen:
        dt = t - fs[s, F_LAST_T]
        if cad == cad:  # a silence is judged against the cadence so far
            gap = max(gap, GAP_CADENCES * cad)
        cad = update_cadence(cad, dt)
        fs[s, F_CADENCE] = cad
        if dt > gap:
            flags |= GAP
        if dt > p[P_RESET_S]:
            reset_stream(s, fs, ist)
    dense = cad <= p[P_DENSE_S]  # NaN: not yet

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
        med = sw_median(s, sw, nmed)
        dev = abs(x - med)
        # the threshold is at least k * floor: below that the MAD cannot matter
        if (not flat and (p[P_HAMPEL] > 0 or dense) and nmed >= max(3, w // 2)
                and dev > p[P_HAMPEL_K] * p[P_MAD_FLOOR]):
            mad = sw_mad(s, sw, nmed, med)
            if dev > p[P_HAMPEL_K] * max(1.4826 * mad, p[P_MAD_FLOOR]):
                artifact = True
    max_art = p[P_MAX_ART]
    if not flat and not artifact and ist[s, I_N] > 0 and not math.isinf(p[P_MAX_RATE]):
        ref_t = fs[s, F_LAST_OK_T]
        ref_x = fs[s, F_LAST_OK_X]
        span = p[P_RATE_SPAN]
        if span > 0.0:
            if t - ref_t < 0.5 * span:  # dense: the newest accepted at least span before
                ref_t, ref_x = ring_before(s, t - span, ref_t, ref_x, ist, rt, rx, rok)
            if cad == cad:  # a jump must persist about span before it is believed
                max_art = max(max_art, int(span / cad + 0.5))
        dto = t - ref_t
        if 0.0 < dto <= gap and abs(x - ref_x) / dto > p[P_MAX_RATE]:
            artifact = True
    if artifact:
        ist[s, I_ART_RUN] += 1
        if ist[s, I_ART_RUN] > max_art:  # sustained: it is the patient, not the sensor
            artifact = False
    if not artifact:
        ist[s, I_ART_RUN] = 0
    if dense and p[P_ZERO_ART] > 0 and x == 0.0 and not flat:
        artifact = True  # the transducer open to air: never the patient, however long

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
        flags |= grid_update(s, t, fs, ist, gh, p, scratch, cad)
        cus = max(fs[s, F_CUS_POS], fs[s, F_CUS_NEG])
        if flags & DRIFT:  # decided: start accumulating afresh
            fs[s, F_CUS_POS] = 0.0
            fs[s, F_CUS_NEG] = 0.0
    else:
        cus = max(fs[s, F_CUS_POS], fs[s, F_CUS_NEG])

    ring_add(s, t, x, accepted, fs, ist, rt, rx, rok, sw, w, p[P_ROLL_T])
    fs[s, F_LAST_T] = t
    fs[s, F_LAST_X] = x

    # outputs
    if math.isnan(z):
        out[i, O_SCORE] = np.nan
    else:
        out[i, O_SCORE] = surprise_score(abs(z), cus)
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


@kernel
def in_order(sid, t):  # type: ignore[no-untyped-def]
    """True if the batch is already sorted by (stream, time), as a stable sort would leave
    it: a replay or a file of one stream needs no sort (NaN times: False)."""
    for i in range(1, sid.shape[0]):
        if sid[i] < sid[i - 1] or (sid[i] == sid[i - 1] and not t[i] >= t[i - 1]):
            return False
    return True


@kernel
def score_batch(starts, sid, metric, t, v, fs, ist, rt, rx, rok, sw, gh,  # type: ignore[no-untyped-def]
                params, edges, upper, n_edges, out, band_out, status, scratch):
    """Score samples sorted by (stream, time); ``starts`` bounds each stream's run.

    ``scratch`` is a float array of at least ``SCRATCH_N`` (the kernel allocates nothing).
    """
    for g in range(starts.shape[0] - 1):
        for i in range(starts[g], starts[g + 1]):
            _step(i, sid[i], metric[i], t[i], v[i], fs, ist, rt, rx, rok, sw, gh, params,
                  edges, upper, n_edges, out, band_out, status, scratch)


@njit(cache=True, parallel=True)
def score_batch_parallel(starts, sid, metric, t, v, fs, ist, rt, rx, rok, sw, gh,  # type: ignore[no-untyped-def]
                         params, edges, upper, n_edges, out, band_out, status, chunks):
    """:func:`score_batch` over ``chunks`` contiguous runs of streams spread over threads
    (large batches only: waking the worker threads costs more than a live micro-batch
    takes). Each chunk is one call of the serial kernel, with its own scratch."""
    groups = starts.shape[0] - 1
    chunks = min(groups, chunks)
    for c in prange(chunks):
        g0 = c * groups // chunks
        g1 = (c + 1) * groups // chunks
        score_batch(starts[g0:g1 + 1], sid, metric, t, v, fs, ist, rt, rx, rok, sw, gh,
                    params, edges, upper, n_edges, out, band_out, status, np.empty(SCRATCH_N))
