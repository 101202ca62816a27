"""Column layout of the scoring state, parameters and outputs (shared by kernel and reference).

State per stream is a row of ``fstate`` (floats) and ``istate`` (ints), a ring of recent
raw samples, and a short history of grid values. Keeping it in a few 2-D arrays makes
growth, checkpoints and the kernel's signature simple.
"""

from __future__ import annotations

# -- float state ---------------------------------------------------------------------
F_LAST_T = 0  # time of the newest in-order sample
F_LAST_X = 1  # its raw value
F_LAST_OK_X = 2  # newest accepted (non-artifact) value
F_LAST_OK_T = 3
F_EW_MEAN = 4  # EWMA level (slow)
F_EW_VAR = 5
F_FAST = 6  # fast EWMA level, sampled onto the forecasting grid
F_SUM = 7  # rolling sums over accepted samples in the ring's time window
F_SUMSQ = 8
F_Y = 9  # last grid value
F_D1 = 10  # last two grid differences (AR lags)
F_D2 = 11
F_PHI1 = 12  # RLS AR(2) coefficients on differences, and its P matrix
F_PHI2 = 13
F_P11 = 14
F_P12 = 15
F_P22 = 16
F_SIG2 = 17  # innovation variance of the grid model
F_GRID_T = 18  # time of the last grid update
F_FC = 19  # forecast at the horizon, its sd and target time
F_FC_SD = 20
F_FC_T = 21
F_TLO = 22  # predicted seconds from F_GRID_T to the low / high threshold (inf: none)
F_PLO = 23
F_THI = 24
F_PHI = 25
F_SLOPE = 26  # Theil–Sen slope over the grid history, per minute
F_CUS_POS = 27
F_CUS_NEG = 28
F_ZINNOV = 29
F_FLAT_T0 = 30  # start of the current run of identical values
F_SHIFT = 31  # the rolling sums are of (x - shift): no cancellation in the variance
F_DT = 32  # last dt between accepted samples, and the EWMA weights it gave (cache)
F_ALPHA = 33
F_ALPHA_FAST = 34
F_TREND = 35  # Kendall's tau of the grid history: how monotone the slope's evidence is
F_CADENCE = 36  # the stream's own sampling interval (s), a robust running estimate (NaN: one
#                 sample so far); see monitor.scoring._kernels for what adapts to it
NF = 37

# -- int state -----------------------------------------------------------------------
I_N = 0  # accepted samples since (re)start
I_BAND = 1
I_HEAD = 2  # ring: index of the next write, and how many entries are live
I_LEN = 3
I_NGRID = 4  # grid points since (re)start
I_BUCKET = 5  # current grid bucket (floor(t / grid))
I_ART_RUN = 6  # consecutive artifacts
I_FLAT_N = 7  # consecutive identical values
I_GHEAD = 8  # grid history: next write, live length
I_GLEN = 9
I_NOK = 10  # accepted samples in the ring
I_NSW = 11  # values in the sorted Hampel window
NI = 12

RING = 64  # raw samples kept per stream
GHIST = 12  # grid values kept per stream (robust slope): the most P_SLOPE_N may ask
WMAX = 16  # largest median / Hampel window
PAIRS_N = GHIST * (GHIST - 1) // 2  # pairwise slopes of the longest slope window
SCRATCH_N = PAIRS_N + GHIST  # floats of scratch the kernel needs: the pairs and the window

# -- per-metric parameters -----------------------------------------------------------
P_TAU = 0  # slow EWMA time constant (s)
P_VAR_FLOOR = 1  # variance floor (unit²), also the scale of the AR inputs
P_ROLL_T = 2  # rolling window (s)
P_MED_W = 3  # samples in the rolling median / Hampel window
P_HAMPEL = 4  # 1: reject Hampel outliers as artifacts
P_HAMPEL_K = 5
P_MAD_FLOOR = 6
P_MAX_RATE = 7  # units per second beyond which a change is an artifact (inf: off)
P_MAX_ART = 8  # an artifact run this long is accepted as real
P_FLAT_S = 9  # identical values for this long: flatline
P_GAP_S = 10  # a silence longer than this is a dropout (flag)
P_RESET_S = 11  # a silence longer than this restarts the stream's models
P_GRID_S = 12  # forecasting grid step (s)
P_HORIZON = 13  # forecast horizon in grid steps
P_LAMBDA = 14  # RLS forgetting factor per grid step
P_PHI1_0 = 15  # prior AR coefficients
P_PHI2_0 = 16
P_LO = 17  # predictive-crossing thresholds (nan: none)
P_HI = 18
P_CUS_K = 19  # CUSUM reference and decision interval, in innovation sds
P_CUS_H = 20
P_FAST_TAU = 21
P_TREND_S = 22  # a monotone trend is extrapolated this far for the crossings (0: off)
P_TREND_TAU = 23  # |Kendall's tau| from which a trend counts as monotone
P_SLOPE_N = 24  # grid points in the Theil-Sen slope (3..GHIST)
P_DENSE_S = 25  # a stream sampled at least this often is dense: Hampel runs on it
P_ZERO_ART = 26  # 1: on a dense stream a reading of 0 is the transducer zeroed, an artifact
P_RATE_SPAN = 27  # the rate-of-change artifact test spans at least this long (s)
NP = 28

# -- per-sample outputs --------------------------------------------------------------
O_SCORE = 0
O_LEVEL = 1
O_ROLL_MEAN = 2
O_ROLL_SD = 3
O_MEDIAN = 4
O_SLOPE = 5  # per minute
O_FC = 6
O_FC_SD = 7
O_FC_T = 8
O_TLO = 9  # seconds from this sample until the predicted low crossing (inf: none)
O_PLO = 10  # probability of being below the low threshold at the horizon
O_THI = 11
O_PHI = 12
O_Z = 13
O_ZINNOV = 14
O_CUSUM = 15
NO = 16

# -- status flags (bitmask) ----------------------------------------------------------
STALE_ORDER = 1  # not newer than the stream's newest sample: history only
ARTIFACT = 2  # Hampel outlier or impossible rate of change: no alarms, no learning
FLATLINE = 4  # identical values for too long: no alarms, no learning
GAP = 8  # follows a dropout
BAND_CHANGED = 16
DRIFT = 32  # CUSUM decided on a sustained shift
WARMUP = 64  # score not yet meaningful
INVALID = 128  # NaN or infinite time or value: ignored, state untouched
