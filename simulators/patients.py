"""Virtual patients with ground truth: coupled vitals, scenarios, and labelled artifacts.

Each patient is generated from a seed, whole, as numpy arrays: the *true* physiology on
a 5-second grid, then what the devices report (monitor numerics every 5 s, NIBP every
15 min, CGM every 5 min), with measurement noise and the labelled artifacts and faults
that must not raise clinical alarms.

Physiology (deliberately simple, and documented so results can be argued with):

* Baselines per patient: HR 60-85 /min, SBP 110-140 mm[Hg], DBP ≈ 0.62·SBP, glucose
  90-140 mg/dL (diabetic patients: 100-180, with meal excursions).
* A circadian rhythm (HR ±4, SBP ±6, lowest at 04:00) and slow AR(1) variability.
* MAP = DBP + (SBP − DBP)/3 always; in shock (sepsis, haemorrhage) HR rises as BP falls
  (a baroreflex gain of 0.8 /min per mm[Hg] below baseline, on top of the event's own HR).
* Glucose: a first-order glucose–insulin balance — meals raise it, insulin action and
  hepatic balance pull it back to the patient's set point with a 60-min time constant;
  hypo- and hyperglycaemia are insulin excess and deficit that change that balance.
  (simglucose's UVA/Padova model installs on Python 3.11 only — it needs distutils —
  and costs ~7 s per simulated patient-day, too slow for a CI cohort of 200.)

Events carry their onset, the time the true value first crosses the event's clinical
threshold (``crossing``; NaN if it never does), and their end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

STEP_S = 5.0  # monitor numerics
NIBP_S = 900.0
CGM_S = 300.0
CGM_LAG_S = 600.0  # interstitial glucose, which a CGM reads, lags blood by ~10 min

SCENARIOS = ("stable", "sepsis", "haemorrhage", "hypoglycaemia", "hyperglycaemia",
             "hypertensive_crisis", "bradycardia")
DEFAULT_MIX = {"stable": 0.40, "sepsis": 0.12, "haemorrhage": 0.08, "hypoglycaemia": 0.14,
               "hyperglycaemia": 0.10, "hypertensive_crisis": 0.08, "bradycardia": 0.08}

# the clinical threshold whose crossing an event's alarms should precede
THRESHOLDS: dict[str, tuple[str, str, float]] = {
    "sepsis": ("sbp", "<=", 90.0),
    "haemorrhage": ("sbp", "<=", 90.0),
    "hypoglycaemia": ("glucose", "<", 70.0),
    "hyperglycaemia": ("glucose", ">", 250.0),
    "hypertensive_crisis": ("sbp", ">=", 220.0),
    "bradycardia": ("hr", "<=", 40.0),
}
GLUCOSE_EVENTS = ("hypoglycaemia", "hyperglycaemia")
# An event is *visible* once its effect on the threshold's metric, as a device samples it
# (CGM: 10 min behind the blood), exceeds twice that metric's natural variability here.
# It is *predictable* when that is at least 30 min before the crossing: 15 min for any
# detector to tell a trend from the noise, and the 15 min of lead the target asks for.
VISIBLE_SD = {"hr": 3.0, "sbp": 4.0, "glucose": 10.0}
PREDICTABLE_MIN = 30.0
ARTIFACTS = ("motion_spike", "flatline", "dropout", "compression_low", "cuff_outlier",
             "duplicate", "out_of_order", "clock_skew", "offline")


@dataclass(frozen=True, slots=True)
class Event:
    patient: str
    kind: str
    onset: float
    crossing: float  # NaN: the threshold is never crossed
    end: float
    severity: str
    # when the devices first show the event beyond the metric's natural variation (see
    # VISIBLE_SD); NaN: never. crossing - visible is the warning the data can give.
    visible: float = math.nan

    @property
    def warning_min(self) -> float:
        """Minutes from the event's first visible sign to its threshold crossing."""
        return (self.crossing - self.visible) / 60.0

    @property
    def predictable(self) -> bool:
        """Whether a 15-min lead can be asked of a detector: the devices show the
        event at least ``PREDICTABLE_MIN`` before its threshold is crossed."""
        return bool(self.warning_min >= PREDICTABLE_MIN)


@dataclass(frozen=True, slots=True)
class Artifact:
    """A labelled fault: clinical alarms caused by it are false alarms."""

    patient: str
    kind: str
    metric: str
    start: float
    end: float


@dataclass
class Patient:
    """One virtual patient's reported streams and ground truth."""

    id: str
    ward: str
    bed: str
    scenario: str
    diabetic: bool
    start: float
    days: float
    streams: dict[str, tuple[F64, F64]] = field(default_factory=dict)  # metric → (t, v)
    truth: dict[str, tuple[F64, F64]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)


def _ramp(t: F64, onset: float, minutes: float) -> F64:
    ramp: F64 = np.clip((t - onset) / (minutes * 60.0), 0.0, 1.0)
    return ramp


def _episode(t: F64, onset: float, rise_min: float, hold_min: float,
             recover_min: float) -> F64:
    """0 → 1 over ``rise_min``, held, then back to 0 over ``recover_min``."""
    up = _ramp(t, onset, rise_min)
    down = _ramp(t, onset + (rise_min + hold_min) * 60.0, recover_min)
    shape: F64 = up * (1.0 - down)
    return shape


def _ar1(rng: np.random.Generator, n: int, sd: float, tau_steps: float) -> F64:
    """Slow physiological variability: an AR(1) with sd ``sd`` and time constant
    ``tau_steps``, vectorised as an exponentially weighted cumulative sum."""
    phi = math.exp(-1.0 / tau_steps)
    e = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), n)
    # x_i = sum_k phi^(i-k) e_k, computed in blocks to keep phi^-k finite
    out = np.empty(n)
    block = max(1, int(50 * tau_steps))
    carry = rng.normal(0.0, sd)
    for s in range(0, n, block):
        seg = e[s:s + block]
        k = np.arange(seg.size)
        w = phi ** (-k)
        x = phi ** k * (carry + np.cumsum(seg * w))
        out[s:s + block] = x
        carry = x[-1]
    return out


def make_patient(index: int, scenario: str, *, seed: int, start: float, days: float = 1.0,
                 ward: str = "SIM") -> Patient:
    """A virtual patient: ``scenario`` happens once, at a seeded time of the stay."""
    rng = np.random.default_rng([seed, index])
    pid = f"p{index:04d}"
    diabetic = scenario in GLUCOSE_EVENTS or rng.random() < 0.15
    p = Patient(pid, ward, str(index + 1), scenario, diabetic, start, days)
    n = int(days * 86400 / STEP_S)
    t: F64 = start + np.arange(n, dtype=np.float64) * STEP_S
    hour = ((t % 86400) / 3600.0)
    circ = np.cos(2 * math.pi * (hour - 16.0) / 24.0)  # high at 16:00, low at 04:00

    hr0, sbp0 = rng.uniform(60, 85), rng.uniform(110, 140)
    ratio = rng.uniform(0.58, 0.66)
    hr = hr0 + 4 * circ + _ar1(rng, n, VISIBLE_SD["hr"], 600 / STEP_S)
    sbp = sbp0 + 6 * circ + _ar1(rng, n, VISIBLE_SD["sbp"], 1800 / STEP_S)
    hr_pre, sbp_pre = hr, sbp  # without the event: its effect is the difference
    glu_set = rng.uniform(100, 180) if diabetic else rng.uniform(90, 140)
    insulin_excess = np.zeros(n)  # mg/dL per min pushed down (+) or up (-)

    # the event, placed so it fits in the stay with time to recover
    onset = start + rng.uniform(0.15, 0.55) * days * 86400
    severity = "severe" if rng.random() < 0.5 else "moderate"
    k = 1.0 if severity == "severe" else 0.75
    if scenario == "sepsis":
        shape = _episode(t, onset, rng.uniform(240, 420), 120, 180)
        sbp = sbp - (sbp0 - rng.uniform(70, 85)) * shape * k
        hr = hr + rng.uniform(20, 35) * shape
    elif scenario == "haemorrhage":
        shape = _episode(t, onset, rng.uniform(30, 60), 60, 90)
        sbp = sbp - (sbp0 - rng.uniform(65, 82)) * shape * k
    elif scenario == "hypertensive_crisis":
        shape = _episode(t, onset, rng.uniform(60, 150), 60, 120)
        sbp = sbp + (rng.uniform(225, 245) - sbp0) * shape * k
        hr = hr + 8 * shape
    elif scenario == "bradycardia":
        shape = _episode(t, onset, rng.uniform(20, 60), 45, 30)
        hr = hr - (hr0 - rng.uniform(30, 38)) * shape * k
    elif scenario == "hypoglycaemia":
        # insulin excess for 2-3 h: a fall of ~1-3 mg/dL/min at its peak
        insulin_excess += rng.uniform(2.0, 3.5) * _episode(t, onset, 20, rng.uniform(40, 90), 30)
    elif scenario == "hyperglycaemia":
        insulin_excess -= rng.uniform(1.5, 3.0) * _episode(t, onset, 30, rng.uniform(120, 200), 60)
    # baroreflex: HR rises as SBP falls below the patient's baseline
    def baroreflex(bp: F64) -> F64:
        rise: F64 = 0.8 * np.clip(sbp0 - bp - 10, 0, None)
        return rise

    hr = hr + baroreflex(sbp)
    dbp = sbp * ratio + _ar1(rng, n, 2.0, 1800 / STEP_S)
    mapp = dbp + (sbp - dbp) / 3.0
    meals, noise = _meals_and_noise(rng, t, diabetic)
    glucose = _glucose(glu_set, meals, noise, insulin_excess)
    p.truth = {"hr": (t, hr), "sbp": (t, sbp), "dbp": (t, dbp), "map": (t, mapp),
               "glucose": (t, glucose)}
    if scenario != "stable":
        metric, op, thr = THRESHOLDS[scenario]
        tv = p.truth[metric][1]
        hit = {"<": tv < thr, "<=": tv <= thr, ">": tv > thr, ">=": tv >= thr}[op]
        after = hit & (t >= onset)
        crossing = float(t[np.argmax(after)]) if after.any() else math.nan
        end = onset + _duration(scenario) * 60.0
        if metric == "glucose":  # the same meals and noise without the insulin imbalance
            effect = glucose - _glucose(glu_set, meals, noise, np.zeros(n))
        elif metric == "sbp":
            effect = sbp - sbp_pre
        else:
            effect = hr - (hr_pre + baroreflex(sbp_pre))
        visible = _visible(t, effect, metric, onset)
        p.events.append(Event(pid, scenario, float(onset), crossing, float(end), severity,
                              visible))
    _report(p, rng)
    return p


def _visible(t: F64, effect: F64, metric: str, onset: float) -> float:
    """The first device sample after ``onset`` showing ``effect`` beyond twice the
    metric's natural variability (NaN: none)."""
    step = {"hr": 1, "sbp": int(NIBP_S / STEP_S), "glucose": int(CGM_S / STEP_S)}[metric]
    lag = int(CGM_LAG_S / STEP_S) if metric == "glucose" else 0
    idx = np.arange(0, t.size, step)
    sensed = np.abs(effect[np.maximum(idx - lag, 0)]) >= 2 * VISIBLE_SD[metric]
    sensed &= t[idx] >= onset
    return float(t[idx][np.argmax(sensed)]) if sensed.any() else math.nan


def _duration(scenario: str) -> float:
    """Minutes from onset until the event is over (rise + hold + recovery, upper bound)."""
    return {"sepsis": 720, "haemorrhage": 240, "hypertensive_crisis": 330, "bradycardia": 135,
            "hypoglycaemia": 180, "hyperglycaemia": 330}[scenario]


def _meals_and_noise(rng: np.random.Generator, t: F64, diabetic: bool) -> tuple[F64, F64]:
    """The glucose model's random inputs: meal absorption (mg/dL per min) and noise."""
    n = t.size
    meals = np.zeros(n)
    for day0 in np.arange(t[0] - t[0] % 86400, t[-1], 86400):
        for hour, carbs in ((8, 50), (13, 70), (19, 70)):
            at = day0 + hour * 3600 + rng.normal(0, 1800)
            i = int((at - t[0]) / STEP_S)
            if 0 <= i < n:
                size = carbs * rng.uniform(0.7, 1.3) * (2.0 if diabetic else 1.0)
                # absorbed over ~90 min: mg/dL per minute
                k = np.arange(0, min(n - i, int(5400 / STEP_S)))
                meals[i:i + k.size] += size / 90.0 * np.exp(-k * STEP_S / 2700.0) * 1.6
    return meals, _ar1(rng, n, 0.02, 300)


def _glucose(setpoint: float, meals: F64, noise: F64, insulin_excess: F64) -> F64:
    """First-order glucose–insulin balance on the 5-s grid."""
    dt_min = STEP_S / 60.0
    tau = 60.0  # min: return to the set point
    g = np.empty(meals.size)
    x = setpoint
    for i in range(meals.size):
        x += dt_min * ((setpoint - x) / tau + meals[i] * 0.4 - insulin_excess[i]) + noise[i]
        x = max(x, 30.0)
        g[i] = x
    return g


def _report(p: Patient, rng: np.random.Generator) -> None:
    """What the devices send: cadences, noise, and labelled artifacts and faults."""
    t, hr = p.truth["hr"]
    pid = p.id
    # monitor numerics every 5 s, integer /min
    hr_t, hr_v = t.copy(), np.round(hr + rng.normal(0, 1.0, t.size))
    keep = np.ones(t.size, dtype=bool)
    day = 86400.0
    n_days = p.days
    # motion spikes: single samples, 3 a day
    for _ in range(rng.poisson(3 * n_days)):
        i = int(rng.integers(0, t.size))
        hr_v[i] = rng.choice([rng.uniform(180, 250), rng.uniform(15, 30)])
        p.artifacts.append(Artifact(pid, "motion_spike", "hr", hr_t[i], hr_t[i] + STEP_S))
    # a flatline (stuck sensor) of 6-15 min in a third of stays
    if rng.random() < 0.33:
        i = int(rng.integers(0, t.size - 200))
        m = int(rng.uniform(360, 900) / STEP_S)
        hr_v[i:i + m] = hr_v[i]
        p.artifacts.append(Artifact(pid, "flatline", "hr", hr_t[i], hr_t[min(i + m, t.size - 1)]))
    # dropouts of 2-20 min, and in a fifth of stays the device goes offline for 30-60 min
    for kind, count, lo, hi in (("dropout", rng.poisson(2 * n_days), 120, 1200),
                                ("offline", int(rng.random() < 0.2), 1800, 3600)):
        for _ in range(count):
            i = int(rng.integers(0, t.size - 1))
            m = int(rng.uniform(lo, hi) / STEP_S)
            keep[i:i + m] = False
            p.artifacts.append(Artifact(pid, kind, "hr", hr_t[i],
                                        hr_t[min(i + m, t.size - 1)]))
    hr_t, hr_v = hr_t[keep], hr_v[keep]
    # duplicated and out-of-order messages, a few a day
    dup = rng.integers(0, hr_t.size, int(rng.poisson(4 * n_days)))
    for i in dup.tolist():
        p.artifacts.append(Artifact(pid, "duplicate", "hr", hr_t[i], hr_t[i]))
    order = np.arange(hr_t.size)
    for i in rng.integers(1, hr_t.size - 1, int(rng.poisson(4 * n_days))).tolist():
        order[i], order[i + 1] = order[i + 1], order[i]
        p.artifacts.append(Artifact(pid, "out_of_order", "hr", hr_t[i], hr_t[i + 1]))
    hr_t = np.concatenate([hr_t[order], hr_t[dup]])
    hr_v = np.concatenate([hr_v[order], hr_v[dup]])
    # a device clock running 90 s fast, for a tenth of stays
    if rng.random() < 0.1:
        hr_t = hr_t + 90.0
        p.artifacts.append(Artifact(pid, "clock_skew", "hr", t[0], t[-1]))
    p.streams["hr"] = (hr_t, hr_v)

    # NIBP every 15 min: SBP/DBP/MAP together; a cuff re-inflation outlier now and then
    nibp = np.arange(0, t.size, int(NIBP_S / STEP_S))
    bp_t = t[nibp]
    sbp = np.round(p.truth["sbp"][1][nibp] + rng.normal(0, 4, nibp.size))
    dbp = np.round(p.truth["dbp"][1][nibp] + rng.normal(0, 3, nibp.size))
    for _ in range(rng.poisson(0.5 * n_days)):
        i = int(rng.integers(0, nibp.size))
        sbp[i] += rng.uniform(35, 60)
        p.artifacts.append(Artifact(pid, "cuff_outlier", "sbp", bp_t[i], bp_t[i]))
    p.streams["sbp"] = (bp_t, sbp)
    p.streams["dbp"] = (bp_t, dbp)
    p.streams["map"] = (bp_t, np.round(dbp + (sbp - dbp) / 3.0))

    # CGM every 5 min for diabetic patients: noise, lag, compression lows at night
    if p.diabetic:
        cgm = np.arange(0, t.size, int(CGM_S / STEP_S))
        lag = int(CGM_LAG_S / STEP_S)
        g = p.truth["glucose"][1][np.maximum(cgm - lag, 0)]
        g = g * (1 + rng.normal(0, 0.03, cgm.size))
        cg_t = t[cgm]
        for _ in range(rng.poisson(0.5 * n_days)):
            night = cg_t[((cg_t % day) / 3600 < 6)]
            if night.size == 0:
                break
            s = float(rng.choice(night))
            low = (cg_t >= s) & (cg_t < s + rng.uniform(900, 1800))
            g[low] -= rng.uniform(30, 50)
            p.artifacts.append(Artifact(pid, "compression_low", "glucose", s,
                                        float(cg_t[low][-1]) if low.any() else s))
        p.streams["glucose"] = (cg_t, np.round(np.clip(g, 40, 400)).astype(np.float64))


def parse_mix(text: str | None) -> dict[str, float]:
    """``stable=0.5,sepsis=0.2,...`` → weights (normalised); None: the default mix."""
    if not text:
        return dict(DEFAULT_MIX)
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, w = part.partition("=")
        name = name.strip()
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
        try:
            mix[name] = float(w) if w else 1.0
        except ValueError as exc:
            raise ValueError(f"{name}: weight must be a number, got {w!r}") from exc
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("scenario weights must add up to more than 0")
    return {k: v / total for k, v in mix.items()}


def cohort(n: int, *, seed: int, days: float = 1.0, mix: dict[str, float] | None = None,
           start: float = 1_763_856_000.0) -> Iterable[Patient]:
    """``n`` patients, scenarios drawn by ``mix`` (exact proportions, seeded order)."""
    mix = mix or DEFAULT_MIX
    names = list(mix)
    counts = [round(mix[s] * n) for s in names]
    while sum(counts) > n:
        counts[counts.index(max(counts))] -= 1
    while sum(counts) < n:
        counts[0] += 1
    plan = [s for s, c in zip(names, counts, strict=True) for _ in range(c)]
    np.random.default_rng(seed).shuffle(plan)
    for i, scenario in enumerate(plan):
        yield make_patient(i, scenario, seed=seed, start=start, days=days)
