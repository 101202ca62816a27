"""``wardwatch score`` end to end against the CSV round trip it cannot avoid.

    .venv/bin/python benchmarks/offline.py [--rows 1000000]

Writes a file of HR every 5 s (RFC 3339 timestamps, 75 ± 5 /min with noise), then times,
in this process: the baseline, pandas reading the file and writing it back with the
contract's five columns (no timestamp parsing, no scoring); and ``score_csv`` (parse,
kernels, alarm engine, write). Prints both, the ratio, and where score's time went.
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
    import pandas as pd

    rng = np.random.default_rng(1)
    t = 1_763_856_000 + 5 * np.arange(rows)
    v = np.round(75 + 5 * np.sin(np.arange(rows) / 5000) + rng.normal(0, 2, rows), 1)
    stamps = pd.to_datetime(t, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
    pd.DataFrame({"timestamp": stamps, "value": v}).to_csv(path, index=False)


def main() -> None:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--profile", action="store_true",
                    help="then run it once more under cProfile and print where time went")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        make(src, args.rows)
        t0 = time.perf_counter()
        frame = pd.read_csv(src, dtype=str, keep_default_na=False)
        frame = frame.assign(score="", forecast="", alert="")
        frame.to_csv(dst, index=False)
        base = time.perf_counter() - t0
        t0 = time.perf_counter()
        score_csv("hr", src, dst)
        ours = time.perf_counter() - t0
        print(f"{args.rows:,} rows: CSV round trip {base:.1f} s, wardwatch score {ours:.1f} s,"
              f" ratio {ours / base:.1f}x")
        if not args.profile:
            return
        prof = cProfile.Profile()
        prof.runcall(score_csv, "hr", src, dst)
    stats = pstats.Stats(prof)
    total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
    for name in ("parse_column", "score", "update", "to_csv"):
        hits = [v for k, v in stats.stats.items()  # type: ignore[attr-defined]
                if k[2] == name]
        if hits:
            print(f"  {name:14} {100 * max(v[3] for v in hits) / total:5.1f}% (profiled)")


if __name__ == "__main__":
    main()
