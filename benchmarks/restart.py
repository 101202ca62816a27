"""A restart under live traffic: how long alarms wait across it, and that none is lost.

    .venv/bin/python benchmarks/restart.py [--rate 2000] [--seconds 30] [--at 10] [--runs 1]

One private Mosquitto (deploy/dev/services.py); ``wardwatch run`` as its own process with
SQLite history in a store that is kept; the paced publisher of ``benchmarks/e2e.py``
(background HR from 200 beds at ``--rate`` msg/s, and every 50 ms one sample that makes an
immediate high-priority alarm on a bed of its own, its observation time its publish time).
The load begins once the first daemon has also loaded river (imported beside the
watching, ~13 s: its steady state, the baseline). ``--at`` seconds into the load the
daemon is stopped (SIGTERM: it drains, writes its checkpoint and exits) and a new one is
started on the same store and persistent session, as an upgrade or a configuration change
does; the broker holds what arrives meanwhile. The new one imports river beside the
watching too, so what comes after the start includes that.

Prints how long the stop and the start took, how many alarms arrived of those sent (and
any twice), the publish→alarm delay of the alarms raised before the stop (the baseline,
same run), while no daemon was subscribed, and after, and when, counted from the SIGTERM,
the alarms were on time again: the receipt of the last one later than 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "deploy" / "dev"), str(REPO / "benchmarks")]

import e2e  # noqa: E402
import ingest  # noqa: E402
from services import Services  # noqa: E402

LATE_S = 0.1  # "on time": the publish->alarm bound at 5,000 msg/s


async def _collect(sub: aiomqtt.Client, got: list[tuple[float, float, str]]) -> None:
    """(receipt, the sample's publish time, bed) for each paced alarm, until cancelled."""
    async for msg in sub.messages:
        if (t := e2e.paced_alarm_t(msg)) is not None:
            got.append((time.time(), t, str(msg.topic).rsplit("/", 1)[-1]))


def _delays(rows: list[tuple[float, float, str]]) -> str:
    if not rows:
        return "none"
    ms = np.array([r - t for r, t, _ in rows]) * 1000
    return (f"{ms.size}: p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms,"
            f" max {ms.max():.1f} ms")


async def once(port: int, rate: float, seconds: float, at: float) -> None:
    url = f"mqtt://127.0.0.1:{port}"
    cid = "restart-ww"
    got: list[tuple[float, float, str]] = []
    with tempfile.TemporaryDirectory() as store:
        spawned = time.time()
        first = e2e.spawn_daemon(url, store, cid, Path(store) / "first.log")
        second: subprocess.Popen[bytes] | None = None
        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier="restart-sub",
                                      clean_session=True) as sub:
                await sub.subscribe("wardwatch/v1/alerts/AL/#", qos=1)
                await e2e.until_logged(first, Path(store) / "first.log", e2e.SUBSCRIBED, 0.01)
                fresh = time.time() - spawned
                await e2e.until_logged(first, Path(store) / "first.log", e2e.SETTLED)  # steady
                pub = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", e2e.PACED, str(port), str(rate), str(seconds), "0",
                    stdout=asyncio.subprocess.PIPE)
                task = asyncio.create_task(_collect(sub, got))
                await asyncio.sleep(at)
                term = time.time()
                first.terminate()
                await asyncio.to_thread(first.wait, 120)
                stopped = time.time()
                second = e2e.spawn_daemon(url, store, cid, Path(store) / "second.log")
                await e2e.until_logged(second, Path(store) / "second.log", e2e.SUBSCRIBED, 0.01)
                up = time.time()
                out, _ = await pub.communicate()
                sent, alarms, took = out.decode().split()
                await asyncio.sleep(5.0)  # the last alarms, if the daemon is behind
                task.cancel()
                loaded = re.search(rb"river.anomaly imported in ([0-9.]+) s",
                                   (Path(store) / "second.log").read_bytes())
        finally:
            for d in (first, second):
                if d is not None and d.poll() is None:
                    d.terminate()
                    d.wait(60)
    await ingest.forget_session(port, cid)
    beds = [b for *_, b in got]
    late = [r for r, t, _ in got if r - t > LATE_S]
    print(f"{rate:,.0f} msg/s asked ({int(sent) / float(took):,.0f} published), restart "
          f"{at:g} s in: stop (SIGTERM to exit) {stopped - term:.2f} s, start (spawn to "
          f"subscribed) {up - stopped:.2f} s on the store (a fresh store before the load: "
          f"{fresh:.2f} s); {len(set(beds))} of {alarms} alarms arrived, "
          f"{len(beds) - len(set(beds))} twice")
    print(f"  raised before the stop  {_delays([g for g in got if g[1] < term])}")
    print(f"  raised while stopped    {_delays([g for g in got if term <= g[1] < up])}")
    print(f"  raised after the start  {_delays([g for g in got if g[1] >= up])}")
    print("  on time again " + (f"{max(late) - term:.2f} s after the SIGTERM (the last alarm "
                                f"later than {LATE_S * 1000:.0f} ms)" if late else
                                "throughout"))
    after = sorted(r - term for r, t, _ in got if t >= up and r - t > LATE_S)
    print(f"  later than {LATE_S * 1000:.0f} ms among those raised after the start: "
          f"{len(after)}" + (f", received {', '.join(f'{x:.1f}' for x in after[:20])} s after "
                             f"the SIGTERM" if after else ""))
    took = float(loaded.group(1)) if loaded else math.nan
    print("  the new daemon loaded river beside the watching " + (
        f"in {took:.1f} s (by ~{up - term + took:.1f} s after the SIGTERM)" if loaded
        else "not within the run"))


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--at", type=float, default=10.0, help="seconds into the load")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    svc = Services()
    svc.start(("mosquitto",))
    try:
        for _ in range(args.runs):
            await once(svc.started["mosquitto"].port, args.rate, args.seconds, args.at)
    finally:
        svc.stop()


if __name__ == "__main__":
    asyncio.run(main())
