"""Plain-Python reference of the scoring kernel, one readable object per stream.

Written independently of :mod:`monitor.scoring._kernels` (deques and ``sorted`` instead
of ring arrays and in-place insertion sorts) and used only by the tests, which check that
both give the same per-sample results on random input.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from monitor.scoring import _layout as L
from monitor.scoring._grid import (
    FILL_CADENCES,
    MAX_FILL,
    P0,
    SIG2_DECAY,
    SLOPE_CADENCES,
    WARMUP_GRID,
)
from monitor.scoring._kernels import CAD_CLIP, CAD_W, GAP_CADENCES, WARMUP_N
from monitor.scoring.params import MetricParams


def next_cadence(cad: float, dt: float) -> float:
    """The running sampling interval: a clipped geometric EWMA of the intervals."""
    if math.isnan(cad):
        return dt
    if abs(dt - cad) <= 1e-3 * cad:
        return cad
    r = min(CAD_CLIP, max(-CAD_CLIP, math.log(max(dt, 1e-3 * cad) / cad)))
    return cad * math.exp(CAD_W * r)


def surprise(az: float, cus: float) -> float:
    """Score in [0, 1): s / (s + 2) for s = -log10 min(1, 2 min(p_z, p_cusum))."""
    x = az / math.sqrt(2.0)
    tail = math.erfc(x)
    # erfc's asymptotic log where it underflows
    log_pz = math.log(tail) if tail > 1e-300 else -x * x - math.log(x * math.sqrt(math.pi))
    log_p = min(0.0, math.log(2.0) + min(log_pz, -cus))
    s = -log_p / math.log(10.0)
    return s / (s + 2.0)


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


@dataclass
class RefStream:
    """One stream's scoring state and per-sample step, in plain Python."""

    p: MetricParams
    edges: list[float]
    upper: list[bool]
    last_t: float = math.nan
    last_x: float = math.nan
    ok_x: float = math.nan
    ok_t: float = math.nan
    n: int = 0
    band: int = -1
    mean: float = 0.0
    var: float = 0.0
    fast: float = 0.0
    ring: deque[tuple[float, float, bool]] = field(default_factory=deque)
    art_run: int = 0
    flat_n: int = 0
    flat_t0: float = 0.0
    # grid model
    ngrid: int = 0
    bucket: int = 0
    y: float = 0.0
    d1: float = 0.0
    d2: float = 0.0
    phi1: float = 0.0
    phi2: float = 0.0
    P: list[float] = field(default_factory=lambda: [P0, 0.0, P0])
    sig2: float = 1.0
    grid_t: float = 0.0
    hist: deque[float] = field(default_factory=lambda: deque(maxlen=L.GHIST))
    fc: float = math.nan
    fc_sd: float = math.nan
    fc_t: float = math.nan
    tlo: float = math.inf
    thi: float = math.inf
    plo: float = math.nan
    phi_hi: float = math.nan
    slope: float = math.nan
    trend: float = math.nan
    zin: float = math.nan
    cpos: float = 0.0
    cneg: float = 0.0
    cad: float = math.nan  # running sampling interval

    def __post_init__(self) -> None:
        self.phi1, self.phi2 = self.p.phi1, self.p.phi2

    def _restart(self) -> None:
        self.n = 0
        self.ring.clear()
        self.ngrid = 0
        self.hist.clear()
        self.art_run = 0
        self.cpos = self.cneg = 0.0
        self.fc = self.fc_sd = self.fc_t = self.plo = self.phi_hi = math.nan
        self.slope = self.trend = self.zin = math.nan
        self.tlo = self.thi = math.inf

    def step(self, t: float, x: float) -> tuple[list[float], int, int]:
        """(outputs in O_* order, band after, status flags) for one sample."""
        p = self.p
        if not (math.isfinite(t) and math.isfinite(x)):
            return [math.nan] * L.NO, self.band, L.INVALID
        seen = not math.isnan(self.last_t)
        if seen and t <= self.last_t:
            return [math.nan] * L.NO, self.band, L.STALE_ORDER
        flags = 0
        gap = p.gap_s
        if seen:
            dt = t - self.last_t
            if not math.isnan(self.cad):
                gap = max(gap, GAP_CADENCES * self.cad)
            self.cad = next_cadence(self.cad, dt)
            if dt > gap:
                flags |= L.GAP
            if dt > p.reset_s:
                self._restart()
        dense = self.cad <= p.dense_s
        if seen and x == self.last_x:
            self.flat_n += 1
        else:
            self.flat_n, self.flat_t0 = 0, t
        flat = self.flat_n >= 2 and t - self.flat_t0 >= p.flat_s

        window = [v for _, v, _ in self.ring][-p.median_w:]
        med = median(window) if window else math.nan
        artifact = False
        if (window and not flat and (p.hampel or dense)
                and len(window) >= max(3, p.median_w // 2)):
            mad = median([abs(v - med) for v in window])
            artifact = abs(x - med) > p.hampel_k * max(1.4826 * mad, p.mad_floor)
        max_art = p.max_artifact_run
        if not flat and not artifact and self.n > 0 and not math.isinf(p.max_rate):
            ref_t, ref_x = self.ok_t, self.ok_x
            if p.rate_span_s > 0:
                if t - ref_t < 0.5 * p.rate_span_s:
                    older = [(rt, rx) for rt, rx, ok in self.ring
                             if ok and rt <= t - p.rate_span_s]
                    if older:
                        ref_t, ref_x = older[-1]
                if not math.isnan(self.cad):
                    max_art = max(max_art, int(p.rate_span_s / self.cad + 0.5))
            dto = t - ref_t
            artifact = 0.0 < dto <= gap and abs(x - ref_x) / dto > p.max_rate
        self.art_run = self.art_run + 1 if artifact else 0
        if artifact and self.art_run > max_art:
            artifact, self.art_run = False, 0
        if dense and p.zero_artifact and x == 0.0 and not flat:
            artifact = True

        z = math.nan
        if self.n >= WARMUP_N:
            z = (x - self.mean) / math.sqrt(self.var + p.var_floor)
        else:
            flags |= L.WARMUP
        accepted = not artifact and not flat
        flags |= (L.ARTIFACT if artifact else 0) | (L.FLATLINE if flat else 0)
        if accepted:
            if self.n == 0:
                self.mean, self.var, self.fast = x, 0.0, x
            else:
                dt = t - self.ok_t
                a = 1.0 - math.exp(-dt / p.tau_s)
                diff = x - self.mean
                self.mean += a * diff
                self.var = (1.0 - a) * (self.var + diff * (a * diff))
                a_fast = 1.0 - math.exp(-dt / p.fast_tau_s)
                self.fast += a_fast * (x - self.fast)
            self.n += 1
            self.ok_x, self.ok_t = x, t
            b = sum(1 for e, up in zip(self.edges, self.upper, strict=True)
                    if x > e or (up and x == e))
            if b != self.band:
                self.band = b
                flags |= L.BAND_CHANGED
            flags |= self._grid(t)
        cus = max(self.cpos, self.cneg)
        if flags & L.DRIFT:
            self.cpos = self.cneg = 0.0

        self.ring.append((t, x, accepted))
        while len(self.ring) > L.RING:
            self.ring.popleft()
        while len(self.ring) > 1 and self.ring[0][0] < t - p.roll_s:
            self.ring.popleft()
        self.last_t, self.last_x = t, x

        out = [math.nan] * L.NO
        if not math.isnan(z):
            out[L.O_SCORE] = surprise(abs(z), cus)
        out[L.O_LEVEL] = self.mean if self.n > 0 else math.nan
        ok = [v for _, v, a in self.ring if a]
        if ok:
            m = sum(ok) / len(ok)
            out[L.O_ROLL_MEAN] = m
            out[L.O_ROLL_SD] = math.sqrt(max(0.0, sum(v * v for v in ok) / len(ok) - m * m))
        out[L.O_MEDIAN] = med
        out[L.O_SLOPE] = self.slope
        out[L.O_FC], out[L.O_FC_SD], out[L.O_FC_T] = self.fc, self.fc_sd, self.fc_t
        since = t - self.grid_t
        out[L.O_TLO] = max(0.0, self.tlo - since)
        out[L.O_PLO] = self.plo
        out[L.O_THI] = max(0.0, self.thi - since)
        out[L.O_PHI] = self.phi_hi
        out[L.O_Z] = z
        out[L.O_ZINNOV] = self.zin
        out[L.O_CUSUM] = cus
        return out, self.band, flags

    def _grid(self, t: float) -> int:
        p = self.p
        b = math.floor(t / p.grid_s)
        y_new = self.fast
        fill = MAX_FILL
        if not math.isnan(self.cad):
            fill = max(fill, math.ceil(FILL_CADENCES * self.cad / p.grid_s))
        if self.ngrid == 0 or b - self.bucket > fill:
            self.ngrid, self.bucket, self.y, self.d1, self.d2 = 1, b, y_new, 0.0, 0.0
            self.grid_t = t
            self.hist.clear()
            self.hist.append(y_new)
            self.fc = self.fc_sd = self.fc_t = self.plo = self.phi_hi = self.slope = math.nan
            self.trend = math.nan
            self.tlo = self.thi = math.inf
            return 0
        k = b - self.bucket
        if k <= 0:
            return 0
        y0 = self.y
        for j in range(1, k):
            yj = y0 + (y_new - y0) * j / k
            self.d2, self.d1, self.y = self.d1, yj - self.y, yj
            self.ngrid += 1
            self.hist.append(yj)
        flags = 0
        d = y_new - self.y
        if self.ngrid >= 3:
            scale = math.sqrt(p.var_floor)
            x1, x2 = self.d1 / scale, self.d2 / scale
            e = d / scale - (self.phi1 * x1 + self.phi2 * x2)
            self.zin = e / math.sqrt(self.sig2)
            self.cpos = max(0.0, self.cpos + self.zin - p.cusum_k)
            self.cneg = max(0.0, self.cneg - self.zin - p.cusum_k)
            if max(self.cpos, self.cneg) > p.cusum_h:
                flags |= L.DRIFT
            self.sig2 = max(1e-4, SIG2_DECAY * self.sig2 + (1 - SIG2_DECAY) * e * e)
            self._rls(x1, x2, e)
        self.d2, self.d1, self.y = self.d1, d, y_new
        self.grid_t = t
        self.ngrid += 1
        self.bucket = b
        self.hist.append(y_new)
        n = p.slope_n
        if not math.isnan(self.cad):
            n = max(n, math.ceil(SLOPE_CADENCES * self.cad / p.grid_s) + 1)
        h = list(self.hist)[-min(n, L.GHIST):]
        if len(h) >= 3:
            pairs = [(i, j) for i in range(len(h)) for j in range(i + 1, len(h))]
            self.slope = median([(h[j] - h[i]) / ((j - i) * p.grid_s) * 60.0 for i, j in pairs])
            self.trend = sum((h[j] > h[i]) - (h[j] < h[i]) for i, j in pairs) / len(pairs)
        else:
            self.slope = self.trend = math.nan
        if self.ngrid >= WARMUP_GRID:
            self._forecast(t)
        return flags

    def _rls(self, x1: float, x2: float, e: float) -> None:
        lam = self.p.forgetting
        p11, p12, p22 = self.P
        px = (p11 * x1 + p12 * x2, p12 * x1 + p22 * x2)
        den = lam + x1 * px[0] + x2 * px[1]
        k = (px[0] / den, px[1] / den)
        phi1, phi2 = self.phi1 + k[0] * e, self.phi2 + k[1] * e
        p11, p12, p22 = ((p11 - k[0] * px[0]) / lam, (p12 - k[0] * px[1]) / lam,
                         (p22 - k[1] * px[1]) / lam)
        if p11 + p22 > 2 * P0:
            f = 2 * P0 / (p11 + p22)
            p11, p12, p22 = p11 * f, p12 * f, p22 * f
        if p11 * p22 - p12 * p12 <= 1e-12 or p11 <= 0 or p22 <= 0:
            p11, p12, p22 = P0, 0.0, P0
        for _ in range(50):
            if abs(phi2) < 0.95 and phi1 + phi2 < 0.95 and phi2 - phi1 < 0.95:
                break
            phi1, phi2 = phi1 * 0.9, phi2 * 0.9
        self.phi1, self.phi2, self.P = phi1, phi2, [p11, p12, p22]

    def _forecast(self, t: float) -> None:
        p = self.p
        scale = math.sqrt(p.var_floor)
        d1, d2, y = self.d1 / scale, self.d2 / scale, self.y
        tlo = 0.0 if y < p.low else math.inf
        thi = 0.0 if y > p.high else math.inf
        psi_prev, a_prev, a_prev2, var_sum = 1.0, 1.0, 0.0, 0.0
        for j in range(1, p.horizon + 1):
            dn = self.phi1 * d1 + self.phi2 * d2
            d2, d1 = d1, dn
            yn = y + dn * scale
            if tlo == math.inf and yn < p.low:
                tlo = (j - 1 + (y - p.low) / (y - yn)) * p.grid_s
            if thi == math.inf and yn > p.high:
                thi = (j - 1 + (p.high - y) / (yn - y)) * p.grid_s
            y = yn
            var_sum += psi_prev * psi_prev
            a = self.phi1 * a_prev + self.phi2 * a_prev2
            a_prev2, a_prev = a_prev, a
            psi_prev += a
        if p.trend_s > 0 and math.isfinite(self.slope) and abs(self.trend) >= p.trend_tau:
            if self.slope < 0 and self.trend < 0 and self.y > p.low:
                reach = (self.y - p.low) / -self.slope * 60.0
                if reach <= p.trend_s:
                    tlo = min(tlo, reach)
            if self.slope > 0 and self.trend > 0 and self.y < p.high:
                reach = (p.high - self.y) / self.slope * 60.0
                if reach <= p.trend_s:
                    thi = min(thi, reach)
        sd = math.sqrt(self.sig2 * var_sum) * scale
        self.fc, self.fc_sd, self.fc_t = y, sd, t + p.horizon * p.grid_s
        self.tlo, self.thi = tlo, thi
        r2 = math.sqrt(2.0)
        self.plo = 0.5 * math.erfc((y - p.low) / (sd * r2)) if sd > 0 else math.nan
        self.phi_hi = 0.5 * math.erfc((p.high - y) / (sd * r2)) if sd > 0 else math.nan
