"""Per-bed multivariate anomaly score over (HR, SBP, DBP, MAP): river's HalfSpaceTrees.

The per-sample kernels watch each stream alone; shock shows as a *combination* (HR up
while BP falls) that may stay inside every single band for a while. This detector sees
each bed's latest values together, at most once per ``every_s`` of observation time (it
costs ~20-50 µs a call, so it runs per bed and minute, not per sample). Like river's
``anomaly.ThresholdFilter``, it does not learn from a vector it scored as anomalous, so a
deteriorating patient does not become its own normal.
"""

from __future__ import annotations

import importlib
import pickle
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from river import anomaly

FEATURES = ("hr", "sbp", "dbp", "map")
# Fixed feature limits (HalfSpaceTrees needs them): physiological, not device, ranges.
LIMITS: dict[Hashable, tuple[float, float]] = {
    "hr": (20.0, 250.0), "sbp": (40.0, 260.0), "dbp": (20.0, 160.0), "map": (30.0, 200.0)}


def preload() -> threading.Thread:
    """Import river in a background thread: it pulls in scipy (~1.5 s here), which the
    daemon needs only when a bed's first vector is due, not to start watching."""
    thread = threading.Thread(target=importlib.import_module, args=("river.anomaly",),
                              name="preload-river", daemon=True)
    thread.start()
    return thread


@dataclass
class _Bed:
    model: anomaly.HalfSpaceTrees
    last_t: float


class BedAnomaly:
    """One HalfSpaceTrees per bed; ``score`` returns a score in [0, 1] when one is due."""

    def __init__(self, *, every_s: float = 60.0, n_trees: int = 10, height: int = 6,
                 window_size: int = 60, protect: float = 0.9, seed: int = 7) -> None:
        self.every_s = every_s
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.protect = protect
        self.seed = seed
        self._beds: dict[tuple[str, str], _Bed] = {}

    def __repr__(self) -> str:
        return (f"BedAnomaly(every_s={self.every_s}, n_trees={self.n_trees}, "
                f"height={self.height}, window_size={self.window_size}, "
                f"protect={self.protect}, seed={self.seed})")

    def last_t(self, ward: str, bed: str) -> float:
        """Observation time of the bed's last turn (−inf: none yet)."""
        state = self._beds.get((ward, bed))
        return -float("inf") if state is None else state.last_t

    def score(self, ward: str, bed: str, t: float, values: dict[str, float]) -> float | None:
        """Score and learn the bed's vector at observation time ``t``.

        None when it is not yet ``every_s`` since the bed's last call, or a feature is
        missing or not finite. The first ``window_size`` calls of a bed score 0 (river's
        HalfSpaceTrees needs one full window as reference).
        """
        x = {k: values.get(k, float("nan")) for k in FEATURES}
        if any(v != v for v in x.values()):
            return None
        state = self._beds.get((ward, bed))
        if state is None:
            # A per-bed seed keeps beds independent and results reproducible.
            seed = self.seed + len(self._beds)
            from river import anomaly  # loaded on first use (see preload)

            state = _Bed(anomaly.HalfSpaceTrees(
                n_trees=self.n_trees, height=self.height, window_size=self.window_size,
                limits=LIMITS, seed=seed), -float("inf"))
            self._beds[(ward, bed)] = state
        if t - state.last_t < self.every_s:
            return None
        state.last_t = t
        clipped = {k: min(max(v, LIMITS[k][0]), LIMITS[k][1]) for k, v in x.items()}
        s = float(state.model.score_one(clipped))  # type: ignore[no-untyped-call]
        if s < self.protect:
            state.model.learn_one(clipped)  # type: ignore[no-untyped-call]
        return s

    def checkpoint(self) -> bytes:
        return pickle.dumps(self._beds)

    def restore(self, blob: bytes) -> None:
        self._beds = pickle.loads(blob)
