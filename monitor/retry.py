"""How often to try again something that is down (a broker, a database), and which
failures are worth a log line."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Retry:
    """Doubling waits between attempts, from ``first`` up to ``most`` seconds, and which
    failures get a log line: each while the wait grows, then one per ``quiet_s`` (at the
    bound, a long outage would otherwise log every few seconds); and since when the
    thing has been down."""

    def __init__(self, *, most: float, first: float = 0.5, quiet_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first, self.most, self.quiet_s, self.clock = first, most, quiet_s, clock
        self.wait = 0.0  # before the next attempt
        self.down_since: float | None = None  # ``clock`` time of the first failure
        self._logged = -math.inf
        self._unlogged = 0

    def failed(self) -> int | None:
        """An attempt failed: ``wait`` is now the delay before the next. Returns None
        when this failure needs no log line, else how many went unlogged before it."""
        grown = self.wait < self.most
        self.wait = min(self.most, max(self.first, self.wait * 2))
        now = self.clock()
        if self.down_since is None:
            self.down_since = now
        if not grown and now - self._logged < self.quiet_s:
            self._unlogged += 1
            return None
        self._logged, unlogged, self._unlogged = now, self._unlogged, 0
        return unlogged

    def succeeded(self) -> float | None:
        """An attempt worked. Returns how long it had been down, None if it was not."""
        down = self.down_s() if self.down_since is not None else None
        self.wait, self._logged, self._unlogged, self.down_since = 0.0, -math.inf, 0, None
        return down

    def down_s(self) -> float:
        """Seconds since the first failure not yet followed by a success (0: up)."""
        return 0.0 if self.down_since is None else self.clock() - self.down_since

    @staticmethod
    def since(unlogged: int) -> str:
        """The log line's tail for failures that went unlogged before it."""
        return f" ({unlogged} more failed since the last such line)" if unlogged else ""
