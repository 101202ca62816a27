"""``wardwatch score`` end to end, against the CSV round trip it cannot avoid.

    .venv/bin/python benchmarks/offline.py [--rows 1000000 5000000] [--profile]

For each size, writes a file of HR every 5 s (RFC 3339 timestamps, 75 ± 5 /min with
noise) and times, in this process: the baseline, Arrow reading the file and writing the
contract's five columns back (the same reader and writer ``score`` uses; no timestamp
parsing, no scoring); and ``score_csv`` (read, parse, kernels, alarm engine, write).
Prints both and their ratio per size, then the marginal rate between the two sizes
(the difference of the runs: start-up and first-call costs do not count), and with
``--profile`` where score's time went on the last size.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.offline import score_csv


def make(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(1)
    t = (1_763_856_000 + 5 * np.arange(rows)).astype("datetime64[s]")
    v = np.round(75 + 5 * np.sin(np.arange(rows) / 5000) + rng.normal(0, 2, rows), 1)
    stamps = np.char.add(np.datetime_as_string(t, unit="s"), "Z")
    pcsv.write_csv(pa.table({"timestamp": stamps, "value": v}), path,
                   pcsv.WriteOptions(quoting_style="none"))


def baseline(src: Path, dst: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(src, convert_options=pcsv.ConvertOptions(
        column_types={"timestamp": pa.string(), "value": pa.string()}))
    n = table.num_rows
    empty = pa.nulls(n, pa.float64())
    out = table.append_column("score", empty).append_column("forecast", empty) \
        .append_column("alert", pa.array([""] * n))
    pcsv.write_csv(out, dst, pcsv.WriteOptions(quoting_style="none"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--profile", action="store_true",
                    help="then run the last size once more under cProfile")
    args = ap.parse_args()
    runs: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        score_csv("hr", *_tiny(Path(tmp)))  # compile and import outside the timings
        for rows in args.rows:
            make(src, rows)
            t0 = time.perf_counter()
            baseline(src, dst)
            base = time.perf_counter() - t0
            t0 = time.perf_counter()
            score_csv("hr", src, dst)
            ours = time.perf_counter() - t0
            runs.append((rows, ours))
            print(f"{rows:,} rows: CSV round trip {base:.2f} s, wardwatch score {ours:.2f} s"
                  f" ({rows / ours:,.0f} rows/s), ratio {ours / base:.1f}x")
        if len(runs) >= 2:
            (r1, s1), (r2, s2) = runs[0], runs[-1]
            print(f"marginal: {(r2 - r1) / (s2 - s1):,.0f} rows/s"
                  f" ({r1:,} -> {r2:,} rows: +{s2 - s1:.2f} s)")
        if not args.profile:
            return
        prof = cProfile.Profile()
        prof.runcall(score_csv, "hr", src, dst)
    stats = pstats.Stats(prof)
    total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
    # the kernel runs on a worker thread, which cProfile does not see: _score_sorted is
    # the kernel and the alarm engine's walk (update) overlapped, as the main thread
    # waited for them
    for name in ("read_series", "_score_sorted", "update", "_write"):
        hits = [v for k, v in stats.stats.items()  # type: ignore[attr-defined]
                if k[2] == name]
        if hits:
            print(f"  {name:14} {100 * max(v[3] for v in hits) / total:5.1f}% (profiled)")


def _tiny(tmp: Path) -> tuple[Path, Path]:
    src = tmp / "tiny.csv"
    make(src, 500)
    return src, tmp / "tiny.out.csv"


if __name__ == "__main__":
    main()
