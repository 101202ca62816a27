"""The processing stage alone: ``Processor.process`` per micro-batch, and where it goes.

    .venv/bin/python benchmarks/process.py [--batch 10 25] [--profile]

No broker: 200 beds of HR (one observation per message, inside the normal band, as the
e2e benchmark's background load) in micro-batches of ``--batch`` messages, each batch's
history journalled to a SQLite spool as the daemon does. Prints µs per batch and per
message, and with ``--profile`` the functions that took the most time (cProfile inflates
Python calls, so read it for shares, not for totals).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.metrics import Metrics
from monitor.pipeline import Processor
from monitor.spool import Spool

T0 = 1.7e9
BEDS = 200


def batches(size: int, count: int, per: int = 1) -> list[list[tuple[str, bytes, float]]]:
    out = []
    for k in range(count):
        batch = []
        for j in range(size):
            i = k * size + j
            bed, t = i % BEDS, T0 + i * 0.0005
            body = {"obs": [{"metric": "hr", "t": t + m * 0.0001, "v": 60 + (i + m) % 29,
                             "unit": "/min"} for m in range(per)]}
            batch.append((f"wardwatch/v1/obs/B{bed // 30}/{bed}", orjson.dumps(body), t))
        out.append(batch)
    return out


def run(size: int, profile: bool, per: int = 1) -> None:
    processor = Processor(Metrics(CollectorRegistry()))
    processor.scorer.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool.db")
        work = batches(size, 6000 // per, per)
        warm = len(work) // 6
        for b in work[:warm]:  # every stream past its warm-up
            spool.push("history", processor.process(b).history)

        def timed() -> None:
            for b in work[warm:]:
                spool.push("history", processor.process(b).history)

        prof = cProfile.Profile() if profile else None
        start = time.perf_counter()
        if prof is None:
            timed()
        else:
            prof.runcall(timed)
        took = time.perf_counter() - start
        spool.close()
    n = len(work) - warm
    print(f"batches of {size} messages of {per} observations: {took / n * 1e6:.0f} µs per "
          f"batch, {took / n / size * 1e6:.1f} µs per message, "
          f"{took / n / size / per * 1e6:.2f} µs per observation")
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[10, 25])
    ap.add_argument("--obs", type=int, default=1, help="observations per message")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    for size in args.batch:
        run(size, args.profile, args.obs)


if __name__ == "__main__":
    main()
