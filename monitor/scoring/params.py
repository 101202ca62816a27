"""Per-metric scoring parameters, with the reasoning behind each choice.

Cadences differ by three orders of magnitude (HR every second, NIBP every 15 min), so
every window is in seconds of observation time and the forecasting grid is per metric.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np
import numpy.typing as npt

from monitor.scoring import _layout as L
from monitor.vitals import METRICS


@dataclass(frozen=True, slots=True)
class MetricParams:
    """Scoring parameters of one metric; the field order is the kernel's column order."""

    tau_s: float  # slow EWMA (baseline) time constant
    var_floor: float  # unit²: a z-score never divides by less; scale of the AR inputs
    roll_s: float  # rolling mean/sd window
    median_w: int  # samples in the rolling median and Hampel window
    hampel: bool  # reject Hampel outliers (dense streams only: sparse ones would lag)
    hampel_k: float
    mad_floor: float
    max_rate: float  # units/s above which a change is physically an artifact
    max_artifact_run: int  # a run of outliers this long is accepted as real
    flat_s: float  # identical values this long: flatline (stuck sensor)
    gap_s: float  # silence longer than this: dropout flag
    reset_s: float  # silence longer than this: the models restart
    grid_s: float  # forecasting grid step
    horizon: int  # forecast horizon, grid steps
    forgetting: float  # RLS forgetting factor per grid step
    phi1: float  # prior AR(2) coefficients on differences (momentum)
    phi2: float
    low: float  # predictive-crossing thresholds (nan: none)
    high: float
    cusum_k: float  # in innovation sds
    cusum_h: float
    fast_tau_s: float  # smoothing of the value that is sampled onto the grid
    # A monotone trend (|Kendall's tau| of the grid history >= trend_tau) is extrapolated
    # along its Theil-Sen slope up to trend_s ahead; a crossing is the earlier of that and
    # the ARIMA path's. The ARIMA learns momentum over many grid steps; a steady ramp is
    # visible in a few. 0: ARIMA only.
    trend_s: float = 0.0
    trend_tau: float = 1.0
    slope_n: int = 6  # grid points in the robust slope (and trend): its window, at least
    # Cadence: each stream estimates its own sampling interval. A stream sampled every
    # dense_s or more often is dense: Hampel runs on it even when ``hampel`` is off (an
    # arterial line, not a cuff). zero_artifact: a dense reading of exactly 0 is the
    # transducer open to air (zeroing), never the patient. rate_span_s: the rate-of-change
    # test measures over at least this long, and asks a jump to persist as long before
    # it is believed, so a 1-min CGM's noise is not a rate.
    dense_s: float = 0.0
    zero_artifact: bool = False
    rate_span_s: float = 0.0

    @property
    def horizon_s(self) -> float:
        return self.grid_s * self.horizon


NAN = math.nan
INF = math.inf

_BP = dict(
    tau_s=3600.0, roll_s=3600.0, median_w=15, hampel=False, hampel_k=3.5, mad_floor=5.0,
    max_rate=INF, max_artifact_run=20, flat_s=3 * 3600.0, gap_s=1800.0, reset_s=6 * 3600.0,
    grid_s=900.0, horizon=1, forgetting=0.98, phi1=0.2, phi2=0.0, cusum_k=0.5,
    cusum_h=5.0, fast_tau_s=60.0, trend_s=1800.0, trend_tau=0.99, slope_n=4,
    dense_s=30.0, zero_artifact=True,
)

PARAMS: dict[str, MetricParams] = {
    # Monitor numerics every 1-5 s. Motion artifacts are brief spikes: Hampel over 15
    # samples rejects them and accepts a real step after 8. Horizon 15 min on a 1-min grid.
    "hr": MetricParams(
        tau_s=300.0, var_floor=4.0, roll_s=60.0, median_w=15, hampel=True, hampel_k=3.5,
        mad_floor=3.0, max_rate=INF, max_artifact_run=20, flat_s=300.0, gap_s=60.0,
        reset_s=3600.0, grid_s=60.0, horizon=15, forgetting=0.99, phi1=0.3, phi2=0.0,
        low=40.0, high=NAN, cusum_k=0.5, cusum_h=5.0, fast_tau_s=15.0, trend_s=900.0,
        trend_tau=0.7, slope_n=12,
    ),
    # NIBP every 5-60 min: no Hampel (a real fall must not wait for 3 readings); one grid
    # step of 15 min is the horizon. SBP < 90 and MAP < 65 are the predicted crossings.
    # An arterial line (a sample every 1-5 s) is dense: Hampel over its last 15 samples
    # rejects flush spikes and short zeroings (a run of up to 7 s at 1 Hz); a reading of
    # exactly 0 is the transducer zeroed, however long it lasts.
    "sbp": MetricParams(var_floor=25.0, low=90.0, high=220.0, **_BP),  # type: ignore[arg-type]
    "dbp": MetricParams(var_floor=16.0, low=NAN, high=NAN, **_BP),  # type: ignore[arg-type]
    "map": MetricParams(var_floor=16.0, low=65.0, high=NAN, **_BP),  # type: ignore[arg-type]
    # CGM every 1, 5 or 15 min. Glucose cannot physically change faster than ~4-5
    # mg/dL/min; faster drops are compression lows, rejected unless a reading at least
    # 5 min later confirms them (the rate is measured over 5 min or more).
    # Horizon 30 min on a 5-min grid, with a momentum prior.
    "glucose": MetricParams(
        tau_s=1800.0, var_floor=25.0, roll_s=1800.0, median_w=5, hampel=False, hampel_k=3.5,
        mad_floor=10.0, max_rate=5.0 / 60.0, max_artifact_run=1, flat_s=3600.0, gap_s=1200.0,
        reset_s=4 * 3600.0, grid_s=300.0, horizon=6, forgetting=0.98, phi1=0.5, phi2=0.0,
        low=70.0, high=250.0, cusum_k=0.5, cusum_h=5.0, fast_tau_s=60.0, trend_s=1800.0,
        trend_tau=0.7, rate_span_s=300.0,
    ),
}

GENERIC = len(METRICS)  # metric id of `wardwatch score --metric generic`


def generic_params(dt: float, noise_sd: float) -> MetricParams:
    """Parameters for a signal with no clinical meaning, from its typical step and noise."""
    dt = dt if dt > 0 and math.isfinite(dt) else 1.0
    sd = noise_sd if noise_sd > 0 and math.isfinite(noise_sd) else 1.0
    return MetricParams(
        tau_s=50 * dt, var_floor=sd**2, roll_s=30 * dt, median_w=15, hampel=True,
        hampel_k=3.5, mad_floor=0.5 * sd, max_rate=INF, max_artifact_run=20, flat_s=30 * dt,
        gap_s=10 * dt, reset_s=1000 * dt, grid_s=dt, horizon=10, forgetting=0.99, phi1=0.3,
        phi2=0.0, low=NAN, high=NAN, cusum_k=0.5, cusum_h=5.0, fast_tau_s=0.25 * dt,
    )


def param_table(overrides: dict[int, MetricParams] | None = None) -> npt.NDArray[np.float64]:
    """(n_metrics + 1, NP) array: one row per metric id, the last for ``generic``."""
    rows = [PARAMS[m.name] for m in METRICS] + [generic_params(1.0, 1.0)]
    for mid, p in (overrides or {}).items():
        rows[mid] = p
    table = np.array([[float(x) for x in astuple(p)] for p in rows])
    assert table.shape[1] == L.NP
    assert (table[:, L.P_MED_W] <= L.WMAX).all() and (table[:, L.P_MED_W] >= 1).all()
    assert (table[:, L.P_SLOPE_N] <= L.GHIST).all() and (table[:, L.P_SLOPE_N] >= 3).all()
    return table


__all__ = ["GENERIC", "PARAMS", "MetricParams", "generic_params", "param_table"]
