"""One reading of timestamps for every entry point: the wire, ``score``, ``replay``, ``evaluate``.

What is accepted, everywhere:

* **epoch seconds** — a number (``1763856000``, ``1763856000.25``);
* **epoch milliseconds** — a number of 1e11 or more (1e11 s is the year 5138; 1e11 ms is
  1973): what JavaScript devices and many exports write;
* **RFC 3339 / ISO 8601** with ``Z`` or an offset (``2025-11-23T00:00:00Z``,
  ``2025-11-23T01:00:00.250+01:00``), fractional seconds to the microsecond. Offsets are
  honoured per value, so a file that crosses a daylight-saving change keeps true intervals.

Strings without an offset (``2025-11-23T00:00:00``) are *naive*: files read them as UTC
(documented in the README); the wire refuses them (``bad_timestamp``), because a device
that does not say which clock it uses cannot be placed in time.

:func:`parse` reads one value (the wire decoder); :func:`parse_column` a whole column of a
file at once. The column reader is vectorised with pandas, and converts through a
``Timedelta`` rather than the datetime's integer representation, whose unit pandas 3
changed (``datetime64[us]`` for ISO strings: dividing its integers by 1e9 read time
1,000x too fast). A test checks that both readers agree value by value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

MS_FROM = 1e11  # numbers at or above this are epoch milliseconds


class TimestampError(ValueError):
    """A timestamp that cannot be read; the message says why, ``reason`` is the wire's
    rejection reason (``non_finite`` or ``bad_timestamp``)."""

    def __init__(self, message: str, reason: str = "bad_timestamp") -> None:
        super().__init__(message)
        self.reason = reason


def _number(x: float) -> float:
    if not math.isfinite(x):
        raise TimestampError("timestamp is not a finite number", "non_finite")
    return x / 1000.0 if abs(x) >= MS_FROM else x


def parse(raw: object, *, file: bool = False) -> float:
    """Epoch seconds of one timestamp (a number, or an RFC 3339 string).

    ``file``: read as a file's cell: a string may hold a number, and a string without an
    offset is UTC. Otherwise (the wire) a string must be RFC 3339 with an offset. Raises
    :class:`TimestampError`.
    """
    if isinstance(raw, bool):
        raise TimestampError("timestamp is not a number or a string")
    if isinstance(raw, int | float):
        try:
            return _number(float(raw))
        except OverflowError as exc:
            raise TimestampError("timestamp is not a finite number", "non_finite") from exc
    if not isinstance(raw, str):
        raise TimestampError("timestamp is not a number or a string")
    text = raw.strip()
    if file:
        try:
            return _number(float(text))
        except ValueError:
            pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TimestampError(f"not RFC 3339: {text[:40]!r}") from exc
    if dt.tzinfo is None:
        if not file:
            raise TimestampError(f"no UTC offset: {text[:40]!r}")
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def epoch_seconds(num: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A column of numeric timestamps as seconds: each is seconds or, from 1e11,
    milliseconds; NaN where not finite (a copy)."""
    out = num.astype(np.float64)
    out[np.abs(out) >= MS_FROM] /= 1000.0
    out[~np.isfinite(out)] = np.nan
    return out


def parse_column(values: Sequence[Any] | Any) -> npt.NDArray[np.float64]:
    """Epoch seconds of a column of timestamps; NaN where one cannot be read.

    A column is read as numbers when most of its values are numbers, else as ISO 8601
    strings (naive ones as UTC). Each number is seconds or, from 1e11, milliseconds.
    """
    import pandas as pd

    col = pd.Series(values, dtype=object)
    if col.empty:
        return np.empty(0)
    num: npt.NDArray[np.float64] = pd.to_numeric(col, errors="coerce").to_numpy(
        dtype=np.float64)
    if np.isfinite(num).mean() > 0.5:
        return epoch_seconds(num)
    text = col.astype(str).str.strip()
    dt = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    epoch = pd.Timestamp(0, tz="UTC")
    secs: npt.NDArray[np.float64] = ((dt - epoch) / pd.Timedelta(seconds=1)).to_numpy(
        dtype=np.float64, na_value=np.nan)
    return secs


__all__ = ["MS_FROM", "TimestampError", "epoch_seconds", "parse", "parse_column"]
