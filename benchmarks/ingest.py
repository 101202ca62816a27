"""Ingest throughput: the wardwatch daemon vs a do-nothing subscriber, same broker, same load.

    .venv/bin/python benchmarks/ingest.py [--messages 40000] [--obs-per-message 1 10]

Starts a real Mosquitto (deploy/dev/services.py), publishes the same pre-built messages
from a separate process at QoS 1, and times how long each consumer takes to take them
all in: first a bare aiomqtt subscriber that only counts, then the daemon (decode,
score, alarms, SQLite history). Prints messages/s, observations/s and the ratio. The
daemon's rounds begin once it has loaded river, which it imports beside the watching
(~13 s, once per process): its steady state. The kernel alone is measured by
benchmarks/scoring.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "deploy" / "dev")]

from procstat import thread_cpu  # noqa: E402
from services import Services  # noqa: E402

from monitor.config import MetricsSettings, MqttSettings, Settings, StoreSettings  # noqa: E402
from monitor.daemon import Daemon  # noqa: E402
from monitor.scoring.multivariate import RIVER  # noqa: E402

PUBLISHER = r"""
import sys, orjson, paho.mqtt.client as mqtt
port, path = int(sys.argv[1]), sys.argv[2]
msgs = orjson.loads(open(path, "rb").read())
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
c.max_inflight_messages_set(1000)
c.max_queued_messages_set(0)
c.connect("127.0.0.1", port)
c.loop_start()
infos = [c.publish(t, p.encode(), qos=1) for t, p in msgs]
for i in infos:
    i.wait_for_publish()
c.loop_stop()
c.disconnect()
"""


def build_messages(n: int, per_msg: int, beds: int = 200,
                   unwell: float = 0.0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(1)
    t0 = time.time() - 3600
    out = []
    sick = round(unwell * beds)
    for i in range(n):
        bed = i % beds
        step = i // beds
        # 60-88 /min: inside NEWS2's normal band, no alarm traffic; the first `sick` beds
        # run at 112-124 /min, so their alarm machines are busy on every sample
        lo, hi = (112, 125) if bed < sick else (60, 89)
        obs = [{"metric": "hr", "t": t0 + (step * per_msg + k) * 1.0,
                "v": int(rng.integers(lo, hi)), "unit": "/min"} for k in range(per_msg)]
        out.append((f"wardwatch/v1/obs/B{bed // 30}/{bed}", orjson.dumps({"obs": obs}).decode()))
    return out


def publish(port: int, path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, str(port), str(path)])


async def forget_session(port: int, identifier: str) -> None:
    """End a persistent session at the broker (a clean-session connect discards it), so
    that it does not queue every later round's messages for a consumer that is gone."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=identifier, clean_session=True):
        pass


async def _take(c: aiomqtt.Client, n: int) -> float:
    """Seconds from the first of ``n`` messages to the last (the do-nothing subscriber)."""
    got = 0
    start = 0.0
    async for _ in c.messages:
        if got == 0:
            start = time.perf_counter()
        got += 1
        if got == n:
            break
    return time.perf_counter() - start


async def baseline(port: int, path: Path, n: int) -> float:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-null", clean_session=True,
                              max_queued_incoming_messages=0) as c:
        await c.subscribe("wardwatch/v1/obs/#", qos=1)
        proc = publish(port, path)
        elapsed = await _take(c, n)
    proc.wait()
    return elapsed


@contextlib.asynccontextmanager
async def running(port: int, store: str, client_id: str) -> AsyncIterator[Daemon]:
    """The daemon in this process, as `wardwatch run` (SQLite history in ``store``)."""
    settings = Settings(
        mqtt=MqttSettings(url=f"mqtt://127.0.0.1:{port}", client_id=client_id),
        metrics=MetricsSettings(port=0), store=StoreSettings(dir=store),
    )
    d = Daemon(settings, own_process=True)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        yield d
    finally:
        stop.set()
        await task


def accepted(d: Daemon) -> float:
    return d.registry.get_sample_value(
        "wardwatch_ingest_observations_total", {"outcome": "accepted"}) or 0.0


async def wardwatch(port: int, path: Path, n_obs: int) -> float:
    with tempfile.TemporaryDirectory() as store:
        async with running(port, store, "bench-ww") as d:
            await d.subscribed.wait()
            await asyncio.to_thread(RIVER.join)  # imported beside the watching: steady now
            proc = publish(port, path)

            def messages() -> float:
                return sum(d.registry.get_sample_value(
                    "wardwatch_ingest_messages_total", {"outcome": o}) or 0.0
                    for o in ("accepted", "partial", "rejected"))

            while messages() == 0:
                await asyncio.sleep(0.001)
            start = time.perf_counter()
            while accepted(d) < n_obs:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - start
            proc.wait()
    await forget_session(port, "bench-ww")
    return elapsed


async def baseline_backlog(port: int, path: Path, n: int) -> float:
    """The do-nothing subscriber draining ``n`` messages queued for its persistent
    session while it was away: the clock runs from the first message to the last."""
    identifier = f"bench-null-{path.stem}"

    def client() -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", port, identifier=identifier, clean_session=False,
                              max_queued_incoming_messages=0)

    async with client() as c:  # the session, subscribed
        await c.subscribe("wardwatch/v1/obs/#", qos=1)
    await asyncio.to_thread(publish(port, path).wait)
    async with client() as c:
        elapsed = await _take(c, n)
    await forget_session(port, identifier)
    return elapsed


async def wardwatch_backlog(port: int, path: Path, n_obs: int,
                            cpu: dict[str, float] | None = None) -> float:
    """The daemon draining a backlog its persistent session holds at the broker, as after
    a restart: started once to subscribe, stopped, the messages published, started
    again; the clock runs from its first message processed to its last observation.
    ``cpu``: filled with each thread's CPU seconds over that window."""
    client_id = f"bench-ww-{path.stem}"
    with tempfile.TemporaryDirectory() as store:
        async with running(port, store, client_id) as d:  # the session, subscribed
            await d.subscribed.wait()
            await asyncio.to_thread(RIVER.join)  # not still loading during the drain
        await asyncio.to_thread(publish(port, path).wait)
        async with running(port, store, client_id) as d:
            while not accepted(d):
                await asyncio.sleep(0.001)
            start = time.perf_counter()
            before = thread_cpu()
            while accepted(d) < n_obs:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - start
            if cpu is not None:
                cpu.update({k: s - before.get(k, 0.0) for k, s in thread_cpu().items()})
    await forget_session(port, client_id)
    return elapsed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--obs-per-message", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--backlog", action="store_true",
                    help="drain a backlog queued at the broker while each consumer was away"
                         " (its capacity, the publisher not competing for the cores)")
    ap.add_argument("--unwell", type=float, default=0.0,
                    help="fraction of beds with tachycardia (alarm engine busy), default 0")
    args = ap.parse_args()
    svc = Services()
    svc.start(("mosquitto",))
    port = svc.started["mosquitto"].port
    try:
        for per in args.obs_per_message:
            msgs = build_messages(args.messages, per, unwell=args.unwell)
            with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as fh:
                fh.write(orjson.dumps(msgs))
                path = Path(fh.name)
            cpu: dict[str, float] = {}
            if args.backlog:
                base = await baseline_backlog(port, path, len(msgs))
                ww = await wardwatch_backlog(port, path, len(msgs) * per, cpu)
            else:
                base = await baseline(port, path, len(msgs))
                ww = await wardwatch(port, path, len(msgs) * per)
            path.unlink()
            n = len(msgs)
            how = ", drained from a backlog" if args.backlog else ""
            print(f"{per:>2} obs/message, {n} messages{how}, {args.unwell:.0%} unwell: "
                  f"do-nothing subscriber "
                  f"{n / base:,.0f} msg/s; wardwatch {n / ww:,.0f} msg/s = "
                  f"{n * per / ww:,.0f} obs/s; wardwatch/baseline = {base / ww:.2f}")
            if cpu:
                busy = {k: v for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v > 0}
                print(f"   the daemon's CPU over the drain ({ww:.2f} s): "
                      f"{sum(busy.values()) / (n * per) * 1e6:.1f} µs per observation in all; "
                      + ", ".join(f"{k} {v:.2f} s" for k, v in busy.items()))
    finally:
        svc.stop()


if __name__ == "__main__":
    asyncio.run(main())
