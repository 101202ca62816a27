"""Soak: a simulated ward through the daemon for a long time; resources and counts over time.

    .venv/bin/python benchmarks/soak.py [--minutes 60] [--patients 30] [--speed 10]
                                        [--every 60] [--csv soak.csv]

Starts a private Mosquitto (deploy/dev/services.py), ``wardwatch run`` as its own process
(SQLite history in a temp store), and ``wardwatch simulate --broker`` publishing virtual
patients at ``--speed`` observation seconds per wall second. A probe subscriber counts
what the broker delivers on the observation topics, so the daemon's backlog is the probe's
count minus the daemon's. Every ``--every`` seconds one line: the daemon's RSS, backlog
(messages and, at the current rate, seconds), its intake queue and the spool, alarm
events, dead letters and internal errors. Not part of CI: it runs for an hour by default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "deploy" / "dev")]

from services import Services, free_port  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scrape(port: int) -> dict[str, float]:
    """Sums of the samples we report, by name and selected labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = s.name
            if s.name == "wardwatch_queue_depth":
                key = f"queue:{s.labels['stage']}"
            elif s.name == "wardwatch_spool_depth":
                key = f"spool:{s.labels['sink']}"
            out[key] = out.get(key, 0.0) + s.value
    return out


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``wardwatch ARGS`` as its own process, stderr to ``log``."""
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "monitor.cli", *args], cwd=REPO,
                                env=env, stdout=subprocess.DEVNULL, stderr=fh)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


class Probe:
    """A do-nothing subscriber on the observation topics: what the broker delivered."""

    def __init__(self) -> None:
        self.n = 0

    async def run(self, port: int, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier="soak-probe",
                                  clean_session=True) as c:
            await c.subscribe("wardwatch/v1/obs/#", qos=1)
            ready.set()
            async for _ in c.messages:
                self.n += 1


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--patients", type=int, default=30)
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    ap.add_argument("--csv", metavar="FILE", help="also write the samples as CSV")
    args = ap.parse_args()

    svc = Services()
    svc.start(("mosquitto",))
    url = svc.started["mosquitto"].url
    port = svc.started["mosquitto"].port
    metrics_port, http_port = free_port(), free_port()
    days = args.minutes * 60 * args.speed / 86400 * 1.2 + 0.05
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as store:
        env = {**os.environ, "WARDWATCH_INGEST_MAX_FUTURE_S": str(86400 * 30),
               "WARDWATCH_MQTT_CLIENT_ID": "soak-wardwatch"}
        daemon = spawn(["run", "--broker", url, "--store", store, "--metrics-port",
                        str(metrics_port), "--http-port", str(http_port)], env,
                       Path(store) / "daemon.log")
        probe = Probe()
        ready = asyncio.Event()
        probe_task = asyncio.create_task(probe.run(port, ready))
        try:
            await ready.wait()
            while True:  # the daemon has subscribed: its session holds what comes next
                try:
                    async with httpx.AsyncClient() as http:
                        health = await http.get(f"http://127.0.0.1:{http_port}/healthz")
                    if health.json()["subscribed"]:
                        break
                except httpx.HTTPError:
                    pass
                if daemon.poll() is not None:
                    raise SystemExit("the daemon exited at start")
                await asyncio.sleep(1)
            await asyncio.sleep(2)
            sim = spawn(["simulate", "--patients", str(args.patients), "--days", f"{days:.3f}",
                         "--broker", url, "--speed", str(args.speed), "--seed", "7"],
                        env, Path(store) / "simulate.log")
            start = time.monotonic()
            last_n, last_t = 0.0, start
            print(f"soak: {args.patients} patients at {args.speed:g}x for {args.minutes:g} min;"
                  f" a line every {args.every:g} s", flush=True)
            print(f"{'min':>5} {'RSS MB':>7} {'msg/s':>7} {'backlog':>8} {'lag s':>6} "
                  f"{'intake q':>8} {'spool':>6} {'alarms':>7} {'dead':>6} {'errors':>6}")
            while time.monotonic() - start < args.minutes * 60:
                await asyncio.sleep(args.every)
                if daemon.poll() is not None:
                    raise SystemExit(f"the daemon exited with {daemon.returncode}")
                m = scrape(metrics_port)
                now = time.monotonic()
                done = sum(v for k, v in m.items() if k == "wardwatch_ingest_messages_total")
                rate = (done - last_n) / (now - last_t)
                last_n, last_t = done, now
                backlog = probe.n - done
                row = {
                    "minute": round((now - start) / 60, 1),
                    "rss_mb": round(rss_mb(daemon.pid), 1),
                    "msg_per_s": round(rate, 1),
                    "backlog": int(backlog),
                    "lag_s": round(backlog / rate, 2) if rate > 0 else float("nan"),
                    "intake_queue": int(m.get("queue:ingest", 0)),
                    "spool": int(sum(v for k, v in m.items() if k.startswith("spool:"))),
                    "alarm_events": int(m.get("wardwatch_alarm_events_total", 0)),
                    "dead_letters": int(m.get("wardwatch_deadletters_total", 0)),
                    "internal_errors": int(m.get("wardwatch_internal_errors_total", 0)),
                }
                rows.append(row)
                print(f"{row['minute']:>5} {row['rss_mb']:>7} {row['msg_per_s']:>7} "
                      f"{row['backlog']:>8} {row['lag_s']:>6} {row['intake_queue']:>8} "
                      f"{row['spool']:>6} {row['alarm_events']:>7} {row['dead_letters']:>6} "
                      f"{row['internal_errors']:>6}", flush=True)
            sim.send_signal(signal.SIGTERM)
            sim.wait()
        finally:
            daemon.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = daemon.wait(timeout=120)
            stop_s = time.monotonic() - started
            probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await probe_task
            svc.stop()
    if rows:
        rss = [r["rss_mb"] for r in rows]
        print(f"RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB (max {max(rss):.0f}); max backlog "
              f"{max(r['backlog'] for r in rows)} messages; alarm events "
              f"{rows[-1]['alarm_events']}; internal errors {rows[-1]['internal_errors']}; "
              f"SIGTERM -> exit {code} in {stop_s:.1f} s")
    if args.csv and rows:
        write_csv(Path(args.csv), rows)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
