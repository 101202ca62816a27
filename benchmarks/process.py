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


def batches(size: int, count: int) -> list[list[tuple[str, bytes, float]]]:
    out = []
    for k in range(count):
        batch = []
        for j in range(size):
            i = k * size + j
            bed, t = i % BEDS, T0 + i * 0.0005
            body = {"obs": [{"metric": "hr", "t": t, "v": 60 + i % 29, "unit": "/min"}]}
            batch.append((f"wardwatch/v1/obs/B{bed // 30}/{bed}", orjson.dumps(body), t))
        out.append(batch)
    return out


def run(size: int, profile: bool) -> None:
    processor = Processor(Metrics(CollectorRegistry()))
    processor.scorer.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool.db")
        work = batches(size, 6000)
        for b in work[:1000]:  # every stream past its warm-up
            spool.push("history", processor.process(b).history)

        def timed() -> None:
            for b in work[1000:]:
                spool.push("history", processor.process(b).history)

        prof = cProfile.Profile() if profile else None
        start = time.perf_counter()
        if prof is None:
            timed()
        else:
            prof.runcall(timed)
        took = time.perf_counter() - start
        spool.close()
    n = len(work) - 1000
    print(f"batches of {size} messages: {took / n * 1e6:.0f} µs per batch, "
          f"{took / n / size * 1e6:.1f} µs per message")
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[10, 25])
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    for size in args.batch:
        run(size, args.profile)


if __name__ == "__main__":
    main()
