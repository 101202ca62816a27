"""Start to subscribed: how long ``wardwatch run`` takes to watch, on an idle broker.

    .venv/bin/python benchmarks/start.py [--starts 5]

One private Mosquitto (deploy/dev/services.py); each start is a new ``wardwatch run``
process on a fresh store, timed from the spawn to its log line "subscribed to" (read every
10 ms), then stopped. The first start compiles the kernels if neither the compiled-ahead
ones nor Numba's cache are there, and is reported apart. Also prints, from each daemon's
log, when the scoring kernels were ready and how long river's import took beside the
watching (the per-bed detector's).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "deploy" / "dev"), str(REPO / "benchmarks")]

from e2e import SETTLED, SUBSCRIBED, spawn_daemon, until_logged  # noqa: E402
from services import Services  # noqa: E402


async def once(port: int, n: int) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as store:
        log = Path(store) / "daemon.log"
        spawned = time.monotonic()
        daemon = spawn_daemon(f"mqtt://127.0.0.1:{port}", store, f"start-{n}", log)
        try:
            await until_logged(daemon, log, SUBSCRIBED, every=0.01)
            took = time.monotonic() - spawned
            await until_logged(daemon, log, SETTLED)  # river's import, beside the watching
        finally:
            daemon.terminate()
            daemon.wait(30)
        return took, log.read_text()


def _seconds(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else "?"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=5)
    args = ap.parse_args()
    svc = Services()
    svc.start(("mosquitto",))
    try:
        port = svc.started["mosquitto"].port
        first, _ = await once(port, 0)
        print(f"first start (compiles the kernels if neither the compiled-ahead ones nor "
              f"Numba's cache are there): {first:.2f} s")
        took = []
        for n in range(1, args.starts + 1):
            s, text = await once(port, n)
            took.append(s)
            print(f"start {n}: {s:.2f} s to subscribed; kernels ready "
                  f"{_seconds(r'scoring kernels ready in ([0-9.]+) s', text)} s after the "
                  f"imports; river imported beside the watching in "
                  f"{_seconds(r'river.anomaly imported in ([0-9.]+) s', text)} s")
        print(f"start to subscribed over {len(took)} starts: median {np.median(took):.2f} s, "
              f"min {min(took):.2f} s, max {max(took):.2f} s")
    finally:
        svc.stop()


if __name__ == "__main__":
    asyncio.run(main())
