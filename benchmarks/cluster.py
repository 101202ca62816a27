"""A loopback cluster under load: 1, 2 and 3 workers on the same messages.

    .venv/bin/python benchmarks/cluster.py [--workers 1 2 3] [--messages 40000]
        [--rate 1000] [--seconds 20]

For each worker count, a fresh cluster (deploy/cluster/cluster.py: three NATS nodes,
12 partitions) and that many ``wardwatch run --worker-index K --worker-of N``; then:

1. **Throughput.** Before any worker runs, a paho process publishes ``--messages`` HR
   observations (200 beds, one per message, QoS 1, over 20 connections) to node 1 as fast
   as it can: a backlog
   in the intake stream. The baseline, in this process: a do-nothing JetStream consumer
   reading that backlog (what reading costs without any processing). Then the workers
   start and drain it; their summed ``wardwatch_ingest_observations_total{outcome=
   "accepted"}`` between 10% and 90% of the backlog gives messages/s (start-up left
   out). The ratio is wardwatch's rate over the reader's.
2. **Publish→alarm** at ``--rate`` msg/s for ``--seconds``: benchmarks/e2e.py's paced
   load over 20 connections (background HR, and every 50 ms an SBP sample that makes an
   immediate high-priority alarm on a bed of its own, its ``t`` the publish time);
   latency is the receipt of the alarm event (on node 1) minus that ``t``.

Prints one line per worker count, with the workers' summed peak RSS.

``--leader-loss`` instead: a device publishes 3,000 MQTT QoS 1 messages to a node that
does not lead the intake stream, the leader is SIGKILLed after 1,000, and the script
prints how many were acknowledged and how many are in the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiomqtt
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "deploy" / "dev"), str(REPO / "deploy" / "cluster"),
                str(REPO / "benchmarks")]

from cluster import Cluster  # noqa: E402
from e2e import PACED, collect_alarm_delays, peak_rss_mb  # noqa: E402
from services import free_port  # noqa: E402

PARTITIONS = 12

# Devices: CONNS connections (a hospital's monitors each have their own; NATS handles
# each connection's QoS 1 publishes one after another), beds split between them.
BURST = r"""
import sys, threading, time, orjson, paho.mqtt.client as mqtt
port, n, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
clients = []
for i in range(conns):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"burst-{i}")
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    clients.append(c)
time.sleep(1.0)
infos = []
start = time.time()
for k in range(n):
    bed = k % 200
    body = {"obs": [{"metric": "hr", "t": time.time(), "v": 60 + k % 29, "unit": "/min"}]}
    infos.append(clients[bed % conns].publish(f"wardwatch/v1/obs/B{bed // 30}/{bed}",
                                              orjson.dumps(body), qos=1))
for i in infos:
    i.wait_for_publish(300)
print(start, time.time(), sum(not i.is_published() for i in infos))
for c in clients:
    c.loop_stop()
    c.disconnect()
"""

CONNS = 20

_ACCEPTED = re.compile(
    r'^wardwatch_ingest_observations_total\{[^}]*outcome="accepted"[^}]*\} (\S+)$', re.M)
_HELD = re.compile(r"^wardwatch_cluster_partitions_held (\S+)$", re.M)


def scrape(ports: list[int], pattern: re.Pattern[str]) -> float:
    total = 0.0
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            continue
        total += sum(float(v) for v in pattern.findall(text))
    return total


async def until(probe: object, what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


async def make_stream(cluster: Cluster) -> None:
    """The intake stream, as a worker makes it (before any worker runs)."""
    import nats

    from monitor.config import ClusterSettings
    from monitor.streamintake import ensure_stream

    nc = await nats.connect(servers=cluster.nats_urls)
    try:
        cfg = ClusterSettings()
        await ensure_stream(nc.jetstream(), replicas=cfg.replicas, retention_s=cfg.retention_s)
    finally:
        await nc.close()


async def baseline(cluster: Cluster, n: int) -> float:
    """Seconds a do-nothing consumer takes to read the newest ``n`` messages of the stream."""
    import nats
    from nats.js.api import DeliverPolicy

    nc = await nats.connect(servers=cluster.nats_urls)
    try:
        js = nc.jetstream()
        info = await js.stream_info("WARDWATCH_IN")
        first = info.state.last_seq - n + 1
        from nats.js.api import ConsumerConfig
        sub = await js.subscribe("wardwatch.part.>", stream="WARDWATCH_IN", ordered_consumer=True,
                                 config=ConsumerConfig(
                                     deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                     opt_start_seq=first))
        start = time.perf_counter()
        got = 0
        async for _msg in sub.messages:
            got += 1
            if got == n:
                break
        took = time.perf_counter() - start
        await sub.unsubscribe()
        return took
    finally:
        await nc.close()


async def run(workers: int, messages: int, rate: float, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as root, Cluster(Path(root),
                                                        partitions=PARTITIONS) as cluster:
        cluster.start(3)
        mqtt_port = cluster.nodes[0].mqtt
        await make_stream(cluster)
        # 1. throughput: a backlog in the stream, then the workers drain it
        pub = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BURST, str(mqtt_port), str(messages), str(CONNS),
            stdout=asyncio.subprocess.PIPE)
        out, _ = await pub.communicate()
        started, published, unacked = map(float, out.decode().split())
        if unacked:
            raise SystemExit(f"{unacked:.0f} publishes not acknowledged in 300 s")
        base = await baseline(cluster, messages)
        ports = [free_port() for _ in range(workers)]
        procs = [cluster.start_worker(k, workers, metrics_port=ports[k]) for k in range(workers)]
        # the rate between 10% and 90% of the backlog (the workers' start-up left out)
        marks: list[tuple[float, float]] = []

        def progress() -> bool:
            n = scrape(ports, _ACCEPTED)
            if 0.1 * messages <= n <= 0.9 * messages:
                marks.append((time.monotonic(), n))
            return n >= messages

        await until(progress, "the backlog", 600)
        if len(marks) < 2:
            raise SystemExit("the backlog went too fast to time: use more --messages")
        (t1, n1), (t2, n2) = marks[0], marks[-1]
        rate_ww = (n2 - n1) / (t2 - t1)
        await until(lambda: scrape(ports, _HELD) == PARTITIONS, "partitions held", 180)
        # 2. publish -> alarm
        got: list[float] = []
        async with aiomqtt.Client("127.0.0.1", mqtt_port, identifier="bench-station") as sub:
            await sub.subscribe("wardwatch/v1/alerts/AL/#", qos=1)
            task = asyncio.create_task(collect_alarm_delays(sub, got))
            paced = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PACED, str(mqtt_port), str(rate), str(seconds), "0",
                str(CONNS),
                stdout=asyncio.subprocess.PIPE)
            out, _ = await paced.communicate()
            _sent, alarms, _took = out.decode().split()
            await asyncio.sleep(5.0)
            task.cancel()
        rss = sum(peak_rss_mb(p.pid) for p in procs)
        ms = np.array(got) * 1000
        lat = (f"p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, "
               f"{ms.size} of {alarms} alarms" if ms.size else "no alarm arrived")
        print(f"{workers} worker(s): a backlog of {messages:,} messages drained at "
              f"{rate_ww:,.0f} msg/s (do-nothing stream reader {messages / base:,.0f} msg/s: "
              f"wardwatch/reader = {rate_ww * base / messages:.2f}; devices published it at "
              f"{messages / (published - started):,.0f} msg/s); "
              f"publish->alarm at {rate:,.0f} msg/s: {lat}; workers' peak RSS {rss:.0f} MB",
              flush=True)


LEADER_LOSS = r"""
import sys, threading, time, paho.mqtt.client as mqtt
port, n, kill_at = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="leader-loss")
up = threading.Event()
c.on_connect = lambda *_: up.set()
c.max_inflight_messages_set(100)
c.connect("127.0.0.1", port)
c.loop_start()
up.wait(30)
infos = []
for k in range(n):
    infos.append(c.publish(f"wardwatch/v1/obs/LL/{k % 24}", b"{}", qos=1))
    if k == kill_at:
        print("kill", flush=True)
        sys.stdin.readline()  # killed
    time.sleep(0.002)
for i in infos:
    i.wait_for_publish(120)
print(sum(i.is_published() for i in infos), flush=True)
"""


async def leader_loss(messages: int) -> None:
    """Devices publish MQTT QoS 1 to a node that does not lead the intake stream; the
    leader is SIGKILLed a third of the way: how many PUBACKed messages reach the stream."""
    import nats

    from monitor.config import ClusterSettings
    from monitor.streamintake import STREAM

    with tempfile.TemporaryDirectory() as root, Cluster(Path(root),
                                                        partitions=PARTITIONS) as cluster:
        cluster.start(3)
        await make_stream(cluster)
        nc = await nats.connect(servers=cluster.nats_urls)
        js = nc.jetstream()
        leader = (await js.stream_info(STREAM)).cluster.leader
        await nc.close()
        victim = next(n for n in cluster.nodes if n.name == leader)
        device = next(n for n in cluster.nodes if n.name != leader)
        pub = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LEADER_LOSS, str(device.mqtt), str(messages),
            str(messages // 3), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert pub.stdout is not None and pub.stdin is not None
        await pub.stdout.readline()
        cluster.kill_node(victim)
        pub.stdin.write(b"\n")
        await pub.stdin.drain()
        acked = int((await pub.stdout.readline()).decode())
        await pub.wait()
        await asyncio.sleep(5.0)
        nc = await nats.connect(servers=[n.nats_url for n in cluster.nodes if n is not victim])
        info = await nc.jetstream().stream_info(STREAM)
        await nc.close()
        print(f"stream leader {leader} SIGKILLed after {messages // 3:,} of {messages:,} "
              f"QoS 1 publishes to {device.name}: {acked:,} acknowledged (PUBACK), "
              f"{info.state.messages:,} in the stream (replicas "
              f"{ClusterSettings().replicas}); new leader {info.cluster.leader}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--leader-loss", action="store_true",
                    help="only: SIGKILL the intake stream's leader under MQTT publishes and "
                         "count what reached the stream")
    args = ap.parse_args()
    if args.leader_loss:
        await leader_loss(3000)
        return
    for n in args.workers:
        await run(n, args.messages, args.rate, args.seconds)


if __name__ == "__main__":
    asyncio.run(main())
