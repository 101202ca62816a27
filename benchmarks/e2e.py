"""The whole path, measured from outside: throughput, publish→alarm latency, memory, offline.

    .venv/bin/python benchmarks/e2e.py [--rates 2000 5000] [--seconds 20]
        [--skip-throughput] [--skip-offline] [--bad-every N] [--at-subscription]

One command, one private Mosquitto (deploy/dev/services.py), and in turn:

1. **Throughput** at 1 and 20 observations per message: a paho publisher process at QoS 1,
   a do-nothing aiomqtt subscriber, then the daemon, on the same messages
   (``benchmarks/ingest.py``); prints messages/s, observations/s and the ratio. Then
   each consumer's **capacity**: the same messages queued at the broker for its
   persistent session while it was away, drained (the publisher no longer sharing the
   two cores with it; ``ingest.py --backlog``).
2. **Publish→alarm** at each rate: ``wardwatch run`` as its own process; a paced paho
   publisher sends normal HR from 200 beds at the rate, and every 50 ms one message whose
   sample makes an immediate high-priority alarm on a bed of its own (SBP 85 mm[Hg]:
   ``sbp.news2.3``). That sample's observation time is its publish time, and the alarm
   event names it (``t``), so latency = receipt of the event − ``t``, on one clock. Prints
   p50/p99/max, how many alarms arrived of those sent, the daemon's peak RSS, and how long
   it took from its start to its subscription. The load begins once the daemon has also
   loaded river, which it imports beside the watching (~13 s): this is its steady state;
   ``--at-subscription`` begins it at the subscription instead (a start's first seconds),
   as ``restart.py`` does after its restart.
3. **Offline** ``score`` on 1M and 5M rows and the marginal rate (``benchmarks/offline.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "deploy" / "dev"), str(REPO / "benchmarks")]

import ingest  # noqa: E402
from services import Services, free_port  # noqa: E402

# Paced publisher: background HR at RATE msg/s from 200 beds for SECONDS, and every 50 ms
# one alarming SBP sample on a fresh bed of ward "AL", its t the publish time.
PACED = r"""
import sys, time, orjson, paho.mqtt.client as mqtt
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
bad_every = int(sys.argv[4])  # every Nth background observation implausible (0: none)
conns = int(sys.argv[5]) if len(sys.argv) > 5 else 1  # the beds spread over connections
clients = []
for i in range(conns):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                    client_id="e2e-pub" if i == 0 else f"e2e-pub-{i}")
    c.max_inflight_messages_set(1000 if conns == 1 else 100)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    clients.append(c)
if conns > 1:
    time.sleep(1.0)  # every connection up before the clock starts
tick, sent, alarms, k = 0.01, 0, 0, 0
start = time.time()
next_alarm = start + 0.5
while True:
    now = time.time()
    if now - start >= seconds:
        break
    due = int((now - start) * rate) - sent
    for _ in range(due):
        bed = k % 200
        v = 999 if bad_every and k % bad_every == 0 else 60 + k % 29
        body = {"obs": [{"metric": "hr", "t": now, "v": v, "unit": "/min"}]}
        clients[bed % conns].publish(f"wardwatch/v1/obs/B{bed // 30}/{bed}",
                                     orjson.dumps(body), qos=1)
        k += 1
    sent += max(due, 0)
    if now >= next_alarm:
        t = time.time()
        body = {"obs": [{"metric": "sbp", "t": t, "v": 85, "unit": "mm[Hg]"}]}
        clients[0].publish(f"wardwatch/v1/obs/AL/{alarms}", orjson.dumps(body), qos=1)
        alarms += 1
        next_alarm += 0.05
    time.sleep(max(0.0, tick - (time.time() - now)))
for c in clients:
    c.loop_stop()
    c.disconnect()
print(sent, alarms, time.time() - start)
"""


def spawn_daemon(url: str, store: str, client_id: str, log: Path) -> subprocess.Popen[bytes]:
    """``wardwatch run`` as its own process (SQLite history in ``store``)."""
    env = {**os.environ, "WARDWATCH_MQTT_CLIENT_ID": client_id}
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--broker", url, "--store", store,
             "--metrics-port", str(free_port())], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=fh)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def collect_alarm_delays(sub: aiomqtt.Client, got: list[float]) -> None:
    """Append to ``got`` each paced alarm's delay: its receipt minus the publish time of
    the sample it names (its observation time; one clock), until cancelled."""
    async for msg in sub.messages:
        if (t := paced_alarm_t(msg)) is not None:
            got.append(time.time() - t)


def paced_alarm_t(msg: aiomqtt.Message) -> float | None:
    """The publish time of the sample a paced alarm's event names; None for any other."""
    ev = orjson.loads(bytes(msg.payload))  # type: ignore[arg-type]
    if ev["state"] == "firing" and ev["code"] == "sbp.news2.3":
        return float(ev["t"])
    return None


async def latency(port: int, rate: float, seconds: float, bad_every: int = 0,
                  at_subscription: bool = False) -> None:
    url = f"mqtt://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as store:
        log = Path(store) / "daemon.log"
        spawned = time.monotonic()
        daemon = spawn_daemon(url, store, f"e2e-ww-{rate:g}", log)
        try:
            got: list[float] = []
            async with aiomqtt.Client("127.0.0.1", port, identifier=f"e2e-sub-{rate:g}",
                                      clean_session=True) as sub:
                await sub.subscribe("wardwatch/v1/alerts/AL/#", qos=1)
                await until_logged(daemon, log, SUBSCRIBED)
                ready = time.monotonic() - spawned
                if not at_subscription:
                    await until_logged(daemon, log, SETTLED)
                settled = time.monotonic() - spawned
                pub = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", PACED, str(port), str(rate), str(seconds),
                    str(bad_every),
                    stdout=asyncio.subprocess.PIPE)

                task = asyncio.create_task(collect_alarm_delays(sub, got))
                out, _ = await pub.communicate()
                sent, alarms, took = out.decode().split()
                await asyncio.sleep(5.0)  # the last alarms, if the daemon is behind
                task.cancel()
            rss = peak_rss_mb(daemon.pid)
        finally:
            daemon.terminate()
            daemon.wait(30)
        await ingest.forget_session(port, f"e2e-ww-{rate:g}")
        ms = np.array(got) * 1000
        achieved = int(sent) / float(took)
        if ms.size:
            flood = f", 1 in {bad_every} implausible" if bad_every else ""
            print(f"{rate:,.0f} msg/s asked ({achieved:,.0f} published{flood}): publish->alarm "
                  f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, "
                  f"max {ms.max():.1f} ms; {ms.size} of {alarms} alarms; "
                  f"daemon peak RSS {rss:.0f} MB, start to subscribed {ready:.1f} s "
                  + ("(the load began then, river loading beside)" if at_subscription else
                     f"(river loaded beside the watching {settled:.1f} s after the start; "
                     f"the load began then)"))
        else:
            print(f"{rate:,.0f} msg/s: no alarm arrived (see {log})")


#: what the daemon logs once it subscribed (its session then holds the rest), and once
#: it has loaded river, imported beside the watching (its steady state begins there)
SUBSCRIBED = b"subscribed to"
SETTLED = b"river.anomaly imported in"


async def until_logged(daemon: subprocess.Popen[bytes], log: Path, line: bytes,
                       every: float = 0.2) -> None:
    """Wait until the daemon's log holds ``line``, reading it every ``every`` seconds."""
    deadline = time.monotonic() + 120
    while line not in log.read_bytes():
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"wardwatch never logged {line!r}:\n{log.read_text()}")
        await asyncio.sleep(every)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--rates", type=float, nargs="+", default=[2000.0, 5000.0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--skip-offline", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--bad-every", type=int, default=0, metavar="N",
                    help="make every Nth background observation implausible (a dead-letter"
                         " flood beside the alarms), 0: none")
    ap.add_argument("--at-subscription", action="store_true",
                    help="begin the latency load at the subscription, while river still "
                         "loads (a start's first seconds), not once it is loaded")
    args = ap.parse_args()
    svc = Services()
    svc.start(("mosquitto",))
    port = svc.started["mosquitto"].port
    try:
        for per in () if args.skip_throughput else (1, 20):
            # 20 per message: a quarter as many messages, five times the observations
            msgs = ingest.build_messages(args.messages // 4 if per > 1 else args.messages,
                                         per)
            with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as fh:
                fh.write(orjson.dumps(msgs))
                path = Path(fh.name)
            n = len(msgs)
            for how, null, daemon in (
                    ("", ingest.baseline, ingest.wardwatch),
                    (", drained from a backlog", ingest.baseline_backlog,
                     ingest.wardwatch_backlog)):
                base = await null(port, path, n)
                ww = await daemon(port, path, n * per)
                print(f"{per:>2} obs/message, {n} messages{how}: do-nothing subscriber "
                      f"{n / base:,.0f} msg/s; wardwatch {n / ww:,.0f} msg/s = "
                      f"{n * per / ww:,.0f} obs/s; wardwatch/baseline = {base / ww:.2f}")
            path.unlink()
        for rate in args.rates:
            await latency(port, rate, args.seconds, args.bad_every, args.at_subscription)
    finally:
        svc.stop()
    if not args.skip_offline:
        await asyncio.to_thread(subprocess.run,
                                [sys.executable, str(REPO / "benchmarks" / "offline.py")],
                                check=True)


if __name__ == "__main__":
    asyncio.run(main())
