"""One timestamp reader for the wire, ``score``, ``replay`` and ``evaluate``."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from monitor.offline import score_csv
from monitor.timestamps import TimestampError, parse, parse_column
from monitor.wire import decode

T0 = 1_763_856_000.0  # 2025-11-23T00:00:00Z

CASES = [
    ("1763856000", T0),
    ("1763856000.25", T0 + 0.25),
    ("1763856000000", T0),  # epoch milliseconds
    ("1763856000250", T0 + 0.25),
    ("2025-11-23T00:00:00Z", T0),
    ("2025-11-23T00:00:00.250Z", T0 + 0.25),
    ("2025-11-23T01:00:00+01:00", T0),
    ("2025-11-22T19:00:00.000001-05:00", T0 + 1e-6),
    ("2025-11-23T00:00:00", T0),  # naive: UTC in files
    ("2025-11-23 00:00:00", T0),
]


@pytest.mark.parametrize(("raw", "want"), CASES)
def test_one_value_in_a_file(raw: str, want: float) -> None:
    assert parse(raw, file=True) == pytest.approx(want, abs=1e-6)


def test_a_column_reads_as_the_scalar_reader_does() -> None:
    iso = [raw for raw, _ in CASES if not raw[0].isdigit() or "-" in raw]
    num = [raw for raw, _ in CASES if raw not in iso]
    for group in (iso, num):
        col = parse_column(group)
        assert col.tolist() == pytest.approx([parse(r, file=True) for r in group], abs=1e-6)
    # a column of ISO strings: unreadable cells are NaN, the rest still read
    col = parse_column(["2025-11-23T00:00:00Z", "yesterday", "", "2025-11-23T00:05:00Z"])
    assert np.isnan(col[1]) and np.isnan(col[2])
    assert col[3] - col[0] == 300.0


def test_pandas_microsecond_datetimes_are_not_read_as_nanoseconds() -> None:
    """pandas 3 gives ``datetime64[us]`` for ISO strings: 15 minutes must stay 900 s."""
    col = parse_column(["2024-01-01T00:00:00Z", "2024-01-01T00:15:00Z"])
    assert col[1] - col[0] == 900.0
    assert col[0] == datetime(2024, 1, 1, tzinfo=UTC).timestamp()


def test_a_daylight_saving_change_keeps_true_intervals() -> None:
    # Europe/Madrid springs forward at 02:00 CET (+01:00) to 03:00 CEST (+02:00)
    raw = ["2026-03-29T01:50:00+01:00", "2026-03-29T01:55:00+01:00",
           "2026-03-29T03:00:00+02:00", "2026-03-29T03:05:00+02:00"]
    col = parse_column(raw)
    assert np.diff(col).tolist() == [300.0, 300.0, 300.0]
    assert [parse(r) for r in raw] == col.tolist()
    # and back in autumn: 02:55 CEST is followed by 02:00 CET, five minutes later
    raw = ["2026-10-25T02:55:00+02:00", "2026-10-25T02:00:00+01:00"]
    assert np.diff(parse_column(raw)).tolist() == [300.0]


def test_the_wire_refuses_naive_and_numeric_strings_and_reads_milliseconds() -> None:
    with pytest.raises(TimestampError, match="no UTC offset"):
        parse("2025-11-23T00:00:00")
    with pytest.raises(TimestampError, match="not RFC 3339"):
        parse("1763856000")
    with pytest.raises(TimestampError, match="finite"):
        parse(float("nan"))
    with pytest.raises(TimestampError):
        parse(True)
    assert parse(1_763_856_000_250) == T0 + 0.25
    payload = (b'{"obs": [{"metric": "hr", "t": 1763856000250, "v": 80, "unit": "/min"},'
               b'{"metric": "hr", "t": "2025-11-23T00:00:01+00:00", "v": 81, "unit": "/min"}]}')
    d = decode("wardwatch/v1/obs/4A/1", payload, now=T0 + 10)
    assert not d.rejections
    assert d.t == [T0 + 0.25, T0 + 1.0]


def _write(path: Path, stamps: list[str], values: list[float]) -> None:
    path.write_text("timestamp,value\n" + "".join(
        f"{s},{v:.1f}\n" for s, v in zip(stamps, values, strict=True)))


def test_score_gives_the_same_outputs_for_epoch_and_rfc3339(tmp_path: Path) -> None:
    """The same 15-min CGM recording, once in epoch seconds, once in RFC 3339 with an
    offset, once in epoch milliseconds: identical scores, forecasts and alarms."""
    rng = np.random.default_rng(5)
    n = 400
    t = T0 + 900.0 * np.arange(n)
    days = t / 86400.0
    v = 140 + 60 * np.sin(2 * np.pi * days * 3) + rng.normal(0, 4, n)
    epoch = [f"{x:.0f}" for x in t]
    millis = [f"{x * 1000:.0f}" for x in t]
    rfc = [datetime.fromtimestamp(x, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00") for x in t]
    outs = []
    for name, stamps in (("epoch", epoch), ("rfc", rfc), ("ms", millis)):
        src, dst = tmp_path / f"{name}.csv", tmp_path / f"{name}.out.csv"
        _write(src, stamps, v.tolist())
        score_csv("glucose", src, dst)
        with dst.open() as fh:
            outs.append([(r["score"], r["forecast"], r["alert"]) for r in csv.DictReader(fh)])
    assert outs[0] == outs[1] == outs[2]
    # a 15-min stream gets forecasts (a stream read 1,000x too fast got none)
    assert sum(1 for _, fc, _ in outs[0] if fc) > n * 0.9
    assert any(a for _, _, a in outs[0])


def test_replay_reads_streams_csv_times_the_same_way(tmp_path: Path) -> None:
    from simulators.publish import csv_rows

    src = tmp_path / "streams.csv"
    src.write_text("ward,bed,metric,timestamp,value\n"
                   "4A,1,hr,2025-11-23T01:00:00+01:00,80\n"
                   "4A,1,hr,1763856005000,81\n"
                   "4A,1,hr,1763856010.5,82\n")
    assert [r[3] for r in csv_rows(src)] == [T0, T0 + 5.0, T0 + 10.5]
    src.write_text("ward,bed,metric,timestamp,value\n4A,1,hr,yesterday,80\n")
    with pytest.raises(ValueError, match=r"streams\.csv:2"):
        csv_rows(src)
