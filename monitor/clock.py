"""The daemon's clock: wall time that never jumps while the daemon runs.

Alarm timers (escalation, snooze end, re-arming), stale-data ages and receipt times
are kept as epoch seconds, because they are persisted and shown to people. Reading
``time.time()`` for them would let a step of the system clock (an RTC that boots in
1970, an NTP correction, a person setting the time) fire every escalation and every
stale-data alarm at once, or hold them off for hours.

:class:`SteadyClock` is anchored to the wall clock when it starts and then advances
with the monotonic clock, which the kernel slews but never steps. A step of the wall
clock is logged and exposed as an offset (``wardwatch_clock_step_seconds``), not
followed; the next start re-anchors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class SteadyClock:
    """``clock()`` → epoch seconds: the wall time at start plus monotonic time since.

    ``wall`` and ``monotonic`` are injectable for tests.
    """

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 *, warn_after_s: float = 2.0) -> None:
        self._wall = wall
        self._mono = monotonic
        self._mono0 = monotonic()
        self._wall0 = wall()
        self.warn_after_s = warn_after_s
        self._warned = 0.0

    def __call__(self) -> float:
        return self._wall0 + (self._mono() - self._mono0)

    def offset(self) -> float:
        """How far the system's wall clock has stepped away from ours (seconds, signed)."""
        off = self._wall() - self()
        if abs(off) >= self.warn_after_s and abs(off - self._warned) >= self.warn_after_s:
            self._warned = off
            log.warning("the system clock stepped %+.1f s; wardwatch keeps its steady clock"
                        " for timers and ages until it restarts", off)
        return off
