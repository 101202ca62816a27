"""wardwatch's daemon: ingest → decode → score → rules → alarms → sinks.

The names below load on first use (PEP 562), so that importing one module of the package
(``monitor.config`` for the bridge, ``monitor.wire`` for a test) does not load the daemon,
Numba and the scoring kernels with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.alarms import AlarmEvent
    from monitor.config import Settings, load
    from monitor.daemon import Daemon
    from monitor.errors import ConfigError, SinkError, SpoolError, WardwatchError

__all__ = ["AlarmEvent", "ConfigError", "Daemon", "Settings", "SinkError", "SpoolError",
           "WardwatchError", "load"]

_HOME = {"AlarmEvent": "monitor.alarms", "Settings": "monitor.config", "load": "monitor.config",
         "Daemon": "monitor.daemon", "ConfigError": "monitor.errors",
         "SinkError": "monitor.errors", "SpoolError": "monitor.errors",
         "WardwatchError": "monitor.errors"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'monitor' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
