"""Per-bed multivariate anomaly score over (HR, SBP, DBP, MAP): river's HalfSpaceTrees.

The per-sample kernels watch each stream alone; shock shows as a *combination* (HR up
while BP falls) that may stay inside every single band for a while. This detector sees
each bed's latest values together, at most once per ``every_s`` of observation time (it
costs ~20-50 µs a call, so it runs per bed and minute, not per sample). Like river's
``anomaly.ThresholdFilter``, it does not learn from a vector it scored as anomalous, so a
deteriorating patient does not become its own normal.

Importing river takes ~1.2 s here (it pulls in scipy.stats), longer than the rest of the
daemon's start. The daemon therefore starts watching without it: given a
:class:`Background` import, the detector lets the vectors that fall due before river is
there wait, in order, and :meth:`BedAnomaly.catch_up` scores them once it is. What waits
is in the checkpoint too, so a stop meanwhile loses none of it.
"""

from __future__ import annotations

import gc
import importlib
import logging
import math
import pickle
import sys
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from river import anomaly

FEATURES = ("hr", "sbp", "dbp", "map")
# Fixed feature limits (HalfSpaceTrees needs them): physiological, not device, ranges.
LIMITS: dict[Hashable, tuple[float, float]] = {
    "hr": (20.0, 250.0), "sbp": (40.0, 260.0), "dbp": (20.0, 160.0), "map": (30.0, 200.0)}

log = logging.getLogger(__name__)

NO_FULL_PASS = 1 << 30  # the oldest generation's threshold while importing in the background

Bed = tuple[str, str]
#: a vector whose turn came before river was loaded: (ward, bed, t, clipped values)
Waiting = tuple[str, str, float, dict[str, float]]


class Background:
    """A module imported once, in a background thread (:meth:`start`), or here (:meth:`load`).

    An import holds the GIL for most of its time, and the threads beside it wait for
    it: the intake's network thread, back from each socket read, waits up to the
    interpreter's switch interval, read after read, and the alarms with it. River's
    import is ~1.2 s of such work here; taken at once beside a daemon near its capacity,
    that is ~1.2 s of processing the daemon must then catch up on its spare capacity
    (at 5,000 msg/s here: 7-12 s late after a restart, ``benchmarks/restart.py``). So it
    is spread out: before each module it imports, the importing thread sleeps long enough
    that it works at most ``duty`` of the time since its last pause (waiting for the GIL
    counts as working, so it slows further under load), and while it imports, the
    interpreter switches threads every ``switch_s``. At 0.1, river takes ~12 s to load;
    what needs it (the per-bed detector, once a minute a bed) waits that long once.

    While it imports, the cyclic garbage collector makes no full passes (its young
    generations still run, so the daemon's own short-lived cycles are still freed): the
    import's allocations would otherwise start full collections, each walking every
    object not frozen (river's own, as they come) with the GIL held, on whichever thread
    allocated; one alarm in most restarts at 5,000 msg/s came >100 ms late that way.
    (With the collector off entirely the daemon's garbage piled up: peak RSS 226 MB.)
    ``freeze`` (a process that is the daemon's own, as the start's objects are): what
    was loaded is then moved out of the collector's view (``gc.freeze``).
    """

    def __init__(self, name: str, *, duty: float = 0.1, switch_s: float = 0.0002,
                 freeze: bool = False) -> None:
        if not 0 < duty <= 1:
            raise ValueError(f"duty must be in (0, 1], not {duty}")
        self.name = name
        self.duty = duty
        self.switch_s = switch_s
        self.freeze = freeze
        self.error: BaseException | None = None
        self.took_s = math.nan  # how long the import took
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Background({self.name!r}, loaded={self.loaded})"

    def start(self) -> Background:
        """Begin the import in a thread, unless it began already."""
        with self._lock:
            if self._thread is None and not self.loaded:
                self._thread = threading.Thread(target=self.load, name=f"import-{self.name}",
                                                daemon=True)
                self._thread.start()
        return self

    def load(self, *, spread: bool = True) -> None:
        """Import it here and now; ``spread=False``: at full speed (nothing waits on it)."""
        if self.loaded:
            return
        started = time.perf_counter()
        pause = _Pause(threading.get_ident(), self.duty if spread else 1.0)
        switch = sys.getswitchinterval()
        thresholds = gc.get_threshold()
        sys.meta_path.insert(0, pause)
        if spread:
            sys.setswitchinterval(min(switch, self.switch_s))
            gc.set_threshold(thresholds[0], thresholds[1], NO_FULL_PASS)
        try:
            importlib.import_module(self.name)
        except BaseException as exc:  # said where it is used: a vector's turn raises it
            self.error = exc
            log.error("cannot import %s: %s", self.name, exc)
        finally:
            sys.setswitchinterval(switch)
            sys.meta_path.remove(pause)
            if spread:
                if self.freeze:
                    gc.freeze()
                gc.set_threshold(*thresholds)
            self.took_s = time.perf_counter() - started
            self._done.set()
        if self.error is None:
            log.info("%s imported in %.1f s, beside the watching", self.name, self.took_s)

    @property
    def loaded(self) -> bool:
        """True once the import has ended, well or not."""
        return self._done.is_set()

    def join(self) -> None:
        self.start()
        self._done.wait()


class _Pause:
    """A finder that finds nothing: on one thread, before each module is looked for, it
    sleeps so that the thread has worked at most ``duty`` of the time since its last
    pause (see :class:`Background`)."""

    def __init__(self, thread: int, duty: float) -> None:
        self.thread = thread
        self.duty = duty
        self.since = time.perf_counter()

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if threading.get_ident() != self.thread:
            return
        worked = time.perf_counter() - self.since
        if worked > 0 and self.duty < 1:
            time.sleep(worked * (1 - self.duty) / self.duty)
        self.since = time.perf_counter()


#: river's anomaly detectors, imported beside the daemon's work (see the module's notes)
RIVER = Background("river.anomaly")



@dataclass
class _Bed:  # the checkpoints before the waiting vectors hold these (see restore)
    model: anomaly.HalfSpaceTrees
    last_t: float


class BedAnomaly:
    """One HalfSpaceTrees per bed; ``score`` returns a score in [0, 1] when one is due.

    ``background``: river's import, if it runs beside the caller's work. Until it has
    ended, a vector whose turn comes waits (``score`` says None) for :meth:`catch_up`.
    Without it, river is imported on the first bed's turn.
    """

    def __init__(self, *, every_s: float = 60.0, n_trees: int = 10, height: int = 6,
                 window_size: int = 60, protect: float = 0.9, seed: int = 7,
                 background: Background | None = None) -> None:
        self.every_s = every_s
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.protect = protect
        self.seed = seed
        self.background = background
        self._models: dict[Bed, anomaly.HalfSpaceTrees] = {}
        self._last: dict[Bed, float] = {}  # each bed's last turn (observation time)
        self._waiting: list[Waiting] = []
        self._pickled: bytes | None = None  # restored models not yet unpickled

    def __repr__(self) -> str:
        return (f"BedAnomaly(every_s={self.every_s}, n_trees={self.n_trees}, "
                f"height={self.height}, window_size={self.window_size}, "
                f"protect={self.protect}, seed={self.seed})")

    @property
    def waiting(self) -> int:
        """Vectors whose turn came before river was loaded, not yet scored."""
        return len(self._waiting)

    def last_t(self, ward: str, bed: str) -> float:
        """Observation time of the bed's last turn (−inf: none yet)."""
        return self._last.get((ward, bed), -math.inf)

    def score(self, ward: str, bed: str, t: float, values: dict[str, float]) -> float | None:
        """Score and learn the bed's vector at observation time ``t``.

        None when it is not yet ``every_s`` since the bed's last turn, a feature is
        missing or not finite, or the vector waits for river (see :meth:`catch_up`).
        The first ``window_size`` turns of a bed score 0 (river's HalfSpaceTrees needs
        one full window as reference).
        """
        x = {k: values.get(k, math.nan) for k in FEATURES}
        if any(v != v for v in x.values()):
            return None
        key = (ward, bed)
        if t - self._last.get(key, -math.inf) < self.every_s:
            return None
        self._last[key] = t
        clipped = {k: min(max(v, LIMITS[k][0]), LIMITS[k][1]) for k, v in x.items()}
        if not self._ready() or self._waiting:
            self._waiting.append((ward, bed, t, clipped))  # in order behind the others
            return None
        return self._turn(key, clipped)

    def catch_up(self) -> list[tuple[str, str, float, float]]:
        """Score the vectors that waited for river, in their order, once it is loaded:
        (ward, bed, t, score) each. Nothing (and at once) while it is still loading."""
        if not self._waiting or not self._ready():
            return []
        waiting, self._waiting = self._waiting, []
        return [(w, b, t, self._turn((w, b), x)) for w, b, t, x in waiting]

    def _ready(self) -> bool:
        """River is there (raising its import's error if it failed), the restored models
        unpickled; False while a background import still runs."""
        bg = self.background
        if bg is not None and not bg.start().loaded:
            return False
        if bg is not None and bg.error is not None:
            raise ImportError(f"cannot import {bg.name}: {bg.error}") from bg.error
        if self._pickled is not None:
            self._models = pickle.loads(self._pickled)
            self._pickled = None
        return True

    def _turn(self, key: Bed, clipped: dict[str, float]) -> float:
        model = self._models.get(key)
        if model is None:
            from river import anomaly  # loaded on first use, or in the background

            # A per-bed seed keeps beds independent and results reproducible.
            model = self._models[key] = anomaly.HalfSpaceTrees(
                n_trees=self.n_trees, height=self.height, window_size=self.window_size,
                limits=LIMITS, seed=self.seed + len(self._models))
        s = float(model.score_one(clipped))  # type: ignore[no-untyped-call]
        if s < self.protect:
            model.learn_one(clipped)  # type: ignore[no-untyped-call]
        return s

    def checkpoint(self) -> bytes:
        """Models, last turns and waiting vectors; while river loads, the restored models
        are passed on as they came (unpickling them needs river)."""
        models = self._pickled if self._pickled is not None else pickle.dumps(self._models)
        return pickle.dumps({"last": self._last, "models": models, "waiting": self._waiting})

    def restore(self, blob: bytes) -> None:
        doc: dict[Any, Any] = pickle.loads(blob)
        if "models" in doc:
            self._last = dict(doc["last"])
            self._waiting = list(doc["waiting"])
            self._pickled = doc["models"]
        else:  # a checkpoint from before the waiting vectors: {bed: _Bed}; needed river
            self._models = {k: b.model for k, b in doc.items()}
            self._last = {k: b.last_t for k, b in doc.items()}
            self._waiting, self._pickled = [], None
