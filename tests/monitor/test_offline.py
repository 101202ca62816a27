"""`wardwatch score`: the offline contract on the live kernels."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import main
from monitor.errors import WardwatchError
from monitor.offline import score_csv

REPO = Path(__file__).resolve().parents[2]


def read(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("timestamp,value\n" + "".join(f"{a},{b}\n" for a, b in rows))


def test_glucose_in_mmol_with_irregular_gaps_bad_rows_and_disorder(tmp_path: Path) -> None:
    t0 = 1_763_856_000
    rows = [(str(t0 + 300 * i + (17 if i % 3 == 0 else 0)), f"{6.5 - 0.05 * i:.2f}")
            for i in range(60)]
    rows[20] = (rows[20][0], "n/a")  # unreadable value
    rows[30:40] = []  # a 50-minute gap
    rows[5], rows[6] = rows[6], rows[5]  # out of order in the file
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(src, rows)
    s = score_csv("glucose", src, dst, unit="mmol/L")
    out = read(dst)
    assert [r["timestamp"] for r in out] == [r[0] for r in rows]  # input order kept
    assert list(out[0]) == ["timestamp", "value", "score", "forecast", "alert"]
    assert (s.rows, s.unreadable) == (50, 1)
    assert out[20]["score"] == out[20]["forecast"] == out[20]["alert"] == ""
    assert out[0]["forecast"] == ""  # warming up
    assert out[10]["forecast"] != ""
    fired = [(i, r["alert"]) for i, r in enumerate(out) if r["alert"]]
    # 6.5 mmol/L falling 0.05 per 5 min: first below 70 mg/dL (3.886 mmol/L) then 54
    first_l1 = next(i for i, r in enumerate(rows)
                    if r[1] != "n/a" and float(r[1]) * 18.0156 < 70)
    # the predictive alarm first, at least 15 min (3 readings) ahead, then the level alarm
    assert [a for _, a in fired] == ["glucose.low.predicted", "glucose.low.l1"]
    assert fired[1] == (first_l1, "glucose.low.l1")
    assert fired[0][0] <= first_l1 - 3
    assert s.alerts == 2


def test_iso_timestamps_with_offsets_and_generic_metric(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    rng = np.random.default_rng(3)
    vals = 10 + rng.normal(0, 0.1, 400)
    vals[300] = 25.0  # one anomaly in a signal with no clinical meaning
    rows = [(f"2025-11-23T{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}+01:00",
             f"{x:.3f}") for i, x in enumerate(vals)]
    write(src, rows)
    score_csv("generic", src, dst)
    score = np.array([float(r["score"] or "nan") for r in read(dst)])
    assert np.nanargmax(score) == 300
    assert score[300] > 0.999
    assert np.nanpercentile(score[20:], 50) < 0.8


def test_bad_input_files_give_clear_errors(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("time,v\n1,2\n")
    with pytest.raises(WardwatchError, match="missing column"):
        score_csv("hr", src, tmp_path / "o.csv")
    write(src, [("1", "2")])
    with pytest.raises(WardwatchError, match="unit"):
        score_csv("hr", src, tmp_path / "o.csv", unit="mg/dL")
    assert main(["score", "--metric", "hr", "--input", str(tmp_path / "absent.csv"),
                 "--output", str(tmp_path / "o.csv")]) == 2


def test_cli_score_command(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(src, [(str(1_763_856_000 + 5 * i), str(v)) for i, v in
                enumerate([80] * 30 + [140] * 20)])
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "score", "--metric", "hr",
                           "--input", str(src), "--output", str(dst)],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "scored 50 rows" in proc.stderr
    alerts = [(i, r["alert"]) for i, r in enumerate(read(dst)) if r["alert"]]
    # the step is believed at its 8th sample (row 37); hr.news2.3 must then hold 30 s
    assert alerts == [(37 + 6, "hr.news2.3")]


def _hypo_twice(path: Path) -> list[float]:
    """A CGM every 5 min: two separate hypoglycaemic episodes reaching 45 mg/dL, 4 h apart,
    each a fall, a trough of 30 min and a recovery to 130."""
    t0 = 1_763_856_000
    one = [130.0 + i % 2 for i in range(12)] + [130 - 8.5 * i for i in range(1, 11)] + \
        [45.0 + i % 2 for i in range(6)] + [45 + 8.5 * i for i in range(1, 11)] + \
        [130.0 + i % 2 for i in range(10)]
    vals = one + one
    path.write_text("timestamp,value\n" + "".join(
        f"{t0 + 300 * i},{v:.1f}\n" for i, v in enumerate(vals)))
    return vals


def _fired(path: Path) -> list[tuple[int, str]]:
    return [(i, a) for i, r in enumerate(read(path)) for a in r["alert"].split(";") if a]


def test_a_modelled_responder_keeps_a_latched_alarm_from_hiding_the_next_episode(
        tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    vals = _hypo_twice(src)
    n = len(vals) // 2
    nobody, nurse = tmp_path / "nobody.csv", tmp_path / "nurse.csv"
    score_csv("glucose", src, nobody, ack_after=0)
    score_csv("glucose", src, nurse)  # default: acknowledged 120 s after it sounds
    silent = _fired(nobody)
    answered = _fired(nurse)
    # nobody answers: the high-priority level-2 alarm latches and every later low-glucose
    # alarm of its rule stays silent, so the second episode raises no value alarm
    assert [a for i, a in silent if i < n].count("glucose.low.l2") == 1
    assert not [a for i, a in silent if i >= n and a.startswith("glucose.low.l")]
    # with the responder, the second episode sounds like the first
    first = [a for i, a in answered if i < n]
    second = [a for i, a in answered if i >= n]
    assert first == second
    assert {"glucose.low.predicted", "glucose.low.l1", "glucose.low.l2"} <= set(second)
    # the same rows: the second episode fires where the first did, n rows later
    assert [i + n for i, _ in answered if i < n] == [i for i, _ in answered if i >= n]


def test_score_cli_takes_ack_after(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    _hypo_twice(src)
    assert main(["score", "--metric", "glucose", "--input", str(src), "--output", str(dst),
                 "--ack-after", "0"]) == 0
    assert [a for _, a in _fired(dst)].count("glucose.low.l2") == 1


def test_cells_that_need_quotes_survive_and_plain_files_stay_plain(tmp_path: Path) -> None:
    t0 = 1_763_856_000
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(src, [(str(t0 + 5 * i), f"{70 + i % 3}") for i in range(50)])
    score_csv("hr", src, dst)
    assert dst.read_text().startswith(f"timestamp,value,score,forecast,alert\n{t0},70,")
    src.write_text(f'timestamp,value\n{t0},"7,5"\n{t0 + 5},"8""0"\n{t0 + 10},81\n')
    s = score_csv("hr", src, dst)
    assert s.unreadable == 2
    assert [(r["timestamp"], r["value"]) for r in read(dst)] == [
        (str(t0), "7,5"), (str(t0 + 5), '8"0'), (str(t0 + 10), "81")]


@pytest.mark.parametrize("quote", [False, True])
def test_rows_formatted_in_chunks_on_several_threads_come_out_whole_and_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quote: bool) -> None:
    """The writer formats chunks of rows on threads: the file must be the one written in
    one piece, quoted or not (a cell needing quotes in the last chunk only)."""
    import monitor.offline

    t0 = 1_763_856_000
    src = tmp_path / "in.csv"
    rows = [(str(t0 + 5 * i), f"{70 + (i * 7) % 60}") for i in range(2_000)]
    if quote:
        rows[-1] = (rows[-1][0], '"7,5"')
    write(src, rows)
    whole, chunked = tmp_path / "whole.csv", tmp_path / "chunked.csv"
    score_csv("hr", src, whole)
    monkeypatch.setattr(monitor.offline, "WRITE_CHUNK", 97)
    score_csv("hr", src, chunked)
    assert chunked.read_bytes() == whole.read_bytes()
    assert len(read(chunked)) == 2_000
    assert (b'"' in chunked.read_bytes()) == quote


@pytest.mark.parametrize("metric", ["hr", "glucose"])
def test_scoring_in_chunks_on_two_threads_gives_the_file_scored_in_one_piece(
        tmp_path: Path, metric: str) -> None:
    """The kernel scores a chunk while the alarm engine walks the one before: however
    the rows are cut, the output (scores, forecasts, every alarm at its row) is that of
    one batch, with disordered, repeated and unreadable rows and a line flush."""
    rng = np.random.default_rng(11)
    t0 = 1_763_856_000
    n, step = 1_500, (5 if metric == "hr" else 300)
    base = 75.0 if metric == "hr" else 120.0
    swing = 60.0 if metric == "hr" else 80.0  # tachycardia / hypoglycaemia episodes
    vals = base + swing * np.sin(np.arange(n) / 90.0) ** 3 + rng.normal(0, 2, n)
    rows = [(str(t0 + step * i + int(rng.integers(0, 3))), f"{x:.1f}")
            for i, x in enumerate(vals)]
    rows[700] = (rows[700][0], "0")  # a flush or a dropped sensor
    rows[300], rows[301] = rows[301], rows[300]
    rows[400] = rows[399]  # a repeat
    rows[500] = (rows[500][0], "n/a")
    rows[600] = ("later", rows[600][1])
    write(src := tmp_path / "in.csv", rows)
    outs = []
    for chunk in (10**9, 64, 7):
        dst = tmp_path / f"out{chunk}.csv"
        summary = score_csv(metric, src, dst, chunk=chunk)
        outs.append((dst.read_bytes(), summary.alerts, summary.unreadable))
    assert outs[1] == outs[0] and outs[2] == outs[0]
    assert outs[0][1] >= 4 and outs[0][2] == 2  # it did raise alarms, and saw bad rows


@pytest.mark.parametrize("stamps", [
    ["1763856000", "1763856005.5", "", "1763856010"],  # seconds, a blank
    ["1763856000000", "1763856005000", "1763856010000", "1763856015000"],  # milliseconds
    ["2025-11-23T00:00:00Z", "2025-11-23T01:00:05.25+01:00", "2025-11-23T00:00:10-00:30",
     "2025-11-23T00:00:15.000001Z"],  # RFC 3339: Arrow converts the column whole
    ["2025-11-23T00:00:00", "2025-11-23 00:00:05", "2025-11-23T00:00:10Z",
     "2025-11-23T00:00:15"],  # naive ones: cell by cell
    ["2025-11-23T00:00:00Z", "later", "", "2025-11-23T00:00:15Z"],  # unreadable cells
    ["1763856000", "x", "1763856010", "1763856015"],
])
def test_arrow_reads_columns_as_the_cell_by_cell_path_does(tmp_path: Path,
                                                           stamps: list[str]) -> None:
    import pandas as pd

    from monitor.offline import read_series
    from monitor.timestamps import parse_column

    values = ["80", "81.5", "", "n/a"]
    src = tmp_path / "in.csv"
    write(src, list(zip(stamps, values, strict=True)))
    _, t, v = read_series(src)
    # to the microsecond (pandas' division can land a few hundred ns off 5.25 s)
    np.testing.assert_allclose(t, parse_column(stamps), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(
        v, pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float))
    write(src, list(zip(stamps, ["80", "81.5", "", "1e3"], strict=True)))  # all numbers
    np.testing.assert_array_equal(read_series(src)[2], [80.0, 81.5, np.nan, 1000.0])
