"""Clinical band rules: NEWS2 pulse and systolic BP subscores, ADA glucose levels.

A rule cuts a metric's value axis into bands at ``edges``. Each edge says whether a
value exactly on it belongs to the band above (``upper``) — so "≤ 40" and "< 54" are
both exact. The kernels only compute band indices; the alarm codes, priorities and
messages here turn a band into an alarm.

Priorities follow IEC 60601-1-8 (high: immediate response, medium: prompt, low:
awareness). The NEWS2 mapping is ours: a single-parameter subscore of 3 is high
(NEWS2 asks for an urgent response), 2 is medium, 1 is low.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.vitals import GLUCOSE, HR, MAP, METRICS, SBP


@dataclass(frozen=True, slots=True)
class Band:
    """One band of a rule; ``code`` None means no alarm in this band."""

    code: str | None
    priority: str | None
    text: str


@dataclass(frozen=True, slots=True)
class BandRule:
    """Bands over one metric, lowest first: ``len(bands) == len(edges) + 1``."""

    metric: int
    edges: tuple[float, ...]
    upper: tuple[bool, ...]  # a value equal to edges[i] belongs to the band above it
    bands: tuple[Band, ...]

    def band_of(self, v: float) -> int:
        """Band index of ``v`` (plain Python, the kernels' reference)."""
        pairs = zip(self.edges, self.upper, strict=True)
        return sum(1 for e, up in pairs if v > e or (up and v == e))


_OK = Band(None, None, "normal")

NEWS2_PULSE = BandRule(
    HR,
    edges=(40, 50, 90, 110, 130),
    upper=(False,) * 5,
    bands=(
        Band("hr.news2.3", "high", "NEWS2 pulse subscore 3 (≤40 /min)"),
        Band("hr.news2.1", "low", "NEWS2 pulse subscore 1 (41–50 /min)"),
        _OK,
        Band("hr.news2.1", "low", "NEWS2 pulse subscore 1 (91–110 /min)"),
        Band("hr.news2.2", "medium", "NEWS2 pulse subscore 2 (111–130 /min)"),
        Band("hr.news2.3", "high", "NEWS2 pulse subscore 3 (≥131 /min)"),
    ),
)

NEWS2_SBP = BandRule(
    SBP,
    edges=(90, 100, 110, 220),
    upper=(False, False, False, True),
    bands=(
        Band("sbp.news2.3", "high", "NEWS2 systolic BP subscore 3 (≤90 mm[Hg])"),
        Band("sbp.news2.2", "medium", "NEWS2 systolic BP subscore 2 (91–100 mm[Hg])"),
        Band("sbp.news2.1", "low", "NEWS2 systolic BP subscore 1 (101–110 mm[Hg])"),
        _OK,
        Band("sbp.news2.3", "high", "NEWS2 systolic BP subscore 3 (≥220 mm[Hg])"),
    ),
)

ADA_GLUCOSE = BandRule(
    GLUCOSE,
    edges=(54, 70, 180, 250),
    upper=(True, True, False, False),
    bands=(
        Band("glucose.low.l2", "high", "level 2 hypoglycaemia (<54 mg/dL)"),
        Band("glucose.low.l1", "medium", "level 1 hypoglycaemia (54–69 mg/dL)"),
        _OK,
        Band("glucose.high.l1", "low", "level 1 hyperglycaemia (>180 mg/dL)"),
        Band("glucose.high.l2", "medium", "level 2 hyperglycaemia (>250 mg/dL)"),
    ),
)

MAP_LOW = BandRule(
    MAP,
    edges=(65,),
    upper=(True,),
    bands=(
        Band("map.low", "high", "mean arterial pressure below 65 mm[Hg]"),
        _OK,
    ),
)

RULES: dict[int, BandRule] = {
    r.metric: r for r in (NEWS2_PULSE, NEWS2_SBP, MAP_LOW, ADA_GLUCOSE)
}

MAX_EDGES = max(len(r.edges) for r in RULES.values())


@dataclass(frozen=True)
class RuleTables:
    """The band rules as dense per-metric arrays, for the kernels."""

    edges: npt.NDArray[np.float64]  # (n_metrics, MAX_EDGES)
    upper: npt.NDArray[np.bool_]  # (n_metrics, MAX_EDGES)
    n_edges: npt.NDArray[np.int64]  # (n_metrics,); 0 = metric has no band rule


def rule_tables() -> RuleTables:
    n = len(METRICS)
    edges = np.zeros((n, MAX_EDGES), dtype=np.float64)
    upper = np.zeros((n, MAX_EDGES), dtype=np.bool_)
    n_edges = np.zeros(n, dtype=np.int64)
    for mid, rule in RULES.items():
        k = len(rule.edges)
        edges[mid, :k] = rule.edges
        upper[mid, :k] = rule.upper
        n_edges[mid] = k
    return RuleTables(edges, upper, n_edges)


def band(metric: int, index: int) -> Band:
    """The band ``index`` of ``metric``'s rule; the normal band for metrics without one."""
    rule = RULES.get(metric)
    if rule is None or index < 0:
        return _OK
    return rule.bands[index]
