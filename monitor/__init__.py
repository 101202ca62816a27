"""wardwatch's daemon: ingest → decode → score → rules → alarms → sinks."""

from __future__ import annotations

from monitor.alarms import AlarmEvent
from monitor.config import Settings, load
from monitor.daemon import Daemon
from monitor.errors import ConfigError, SinkError, SpoolError, WardwatchError

__all__ = ["AlarmEvent", "ConfigError", "Daemon", "Settings", "SinkError", "SpoolError",
           "WardwatchError", "load"]
