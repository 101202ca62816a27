"""The exceptions wardwatch raises.

    WardwatchError
    ├── ConfigError          a setting is missing, unknown or of the wrong type
    ├── SinkError            a sink could not deliver a batch (transient: the batch is spooled)
    └── SpoolError           the on-disk spool could not be read or written

Bad input on the wire is never raised: it is counted, logged and dead-lettered
(see :mod:`monitor.wire`).
"""

from __future__ import annotations


class WardwatchError(Exception):
    """Root of every error wardwatch raises on purpose."""


class ConfigError(WardwatchError):
    """A setting is missing, unknown or has the wrong type."""


class SinkError(WardwatchError):
    """A sink could not deliver a batch; the caller spools it and retries later."""


class SpoolError(WardwatchError):
    """The on-disk spool could not be read or written."""
