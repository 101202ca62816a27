"""``wardwatch demo``: broker, simulated ward, daemon and a live terminal view in one process.

With no ``--broker`` an in-process amqtt broker is started on a free loopback port;
with no InfluxDB, history goes to SQLite. Everything runs on simulated time, faster
than the wall clock, so the future-timestamp bound is lifted for the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import secrets
import socket
import tempfile
import time
from collections import deque
from typing import Any

import aiomqtt
import orjson
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.mqtt import client_args, redacted
from monitor.rules import RULES
from monitor.vitals import METRIC_IDS, METRICS
from simulators.ward import make_ward, observations

log = logging.getLogger(__name__)

PRIORITY_STYLE = {"high": "bold white on red", "medium": "black on yellow", "low": "black on cyan"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _embedded_broker(port: int) -> Any:
    from amqtt.broker import Broker

    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    try:
        yield
    finally:
        await broker.shutdown()


@dataclasses.dataclass
class _Ward:
    """What the simulated ward has published, and how far its simulated clock got."""

    until_s: float = 0.0  # stop after this much simulated time; 0: no limit
    published: int = 0
    simulated_s: float = 0.0


async def _simulate(url: str, beds: int, speed: float, stop: asyncio.Event, ward: _Ward) -> None:
    """Publish the simulated ward, ``speed`` simulated seconds per wall second.

    Each bed's observations of one instant go in one message, and the instant's messages go
    out together (one round trip per instant, not per bed), so a slow machine keeps pace."""
    start = time.time()
    wall0 = time.monotonic()
    args = client_args(url, identifier="wardwatch-demo-ward")
    async with aiomqtt.Client(**args) as client:
        for t, group in itertools.groupby(observations(make_ward(beds), start=start),
                                          key=lambda due: due[0]):
            delay = wall0 + (t - start) / speed - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            if ward.until_s and t - start >= ward.until_s:
                stop.set()
                return
            sent = [(bed, obs) for _, bed, obs in group]
            await asyncio.gather(*(
                client.publish(f"wardwatch/v1/obs/{bed.ward}/{bed.bed}",
                               orjson.dumps({"obs": obs}), qos=1) for bed, obs in sent))
            ward.published += sum(len(obs) for _, obs in sent)
            ward.simulated_s = t - start


async def _drain(daemon: Daemon, ward: _Ward, within: float) -> None:
    """Wait until the daemon has judged every observation the ward published (or
    ``within`` seconds), so the demo's summary covers the whole simulated span."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        seen = sum(daemon.registry.get_sample_value(
            "wardwatch_ingest_observations_total", {"outcome": o}) or 0
            for o in ("accepted", "rejected", "out_of_order"))
        if seen >= ward.published:
            return
        await asyncio.sleep(0.1)
    log.warning("demo: the daemon had not judged all %d published observations after %.0f s",
                ward.published, within)


async def _watch_alerts(url: str, events: deque[dict[str, Any]], plain: bool) -> None:
    args = client_args(url, identifier="wardwatch-demo-station")
    async with aiomqtt.Client(**args) as client:
        await client.subscribe("wardwatch/v1/alerts/#", qos=1)
        async for msg in client.messages:
            if not isinstance(msg.payload, bytes | bytearray):
                continue
            ev = orjson.loads(msg.payload)
            events.appendleft(ev)
            if plain:
                print(f"{time.strftime('%H:%M:%S')} {ev['ward']}/{ev['bed']:>3} "
                      f"{ev['priority']:<6} {ev['state']:<9} {ev['code']:<16} {ev['message']}",
                      flush=True)


def _band_style(metric: str, value: float) -> str:
    rule = RULES.get(METRIC_IDS[metric])
    if rule is None or math.isnan(value):
        return ""
    b = rule.bands[rule.band_of(value)]
    return PRIORITY_STYLE.get(b.priority or "", "")


def _view(daemon: Daemon, events: deque[dict[str, Any]], sim_start: float) -> Group:
    st = daemon.processor.streams
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for i, (ward, bed, mid) in enumerate(st.keys):
        rows.setdefault((ward, bed), {})[METRICS[mid].name] = float(st.value[i])
    active = daemon.processor.alarms.active()
    table = Table(title="wardwatch demo — ward 4A (simulated)", expand=False)
    for col in ("bed", "HR /min", "BP mm[Hg]", "glucose mg/dL", "active alarms"):
        table.add_column(col)
    for (ward, bed), v in sorted(rows.items(), key=lambda kv: int(kv[0][1])):
        alarms = [(a, gs) for a, gs in active if (a.ward, a.bed) == (ward, bed)]
        cell = Text()
        for a, gs in alarms:
            mark = " (ack)" if a.state == "acknowledged" else " (latched)" if gs.latched else ""
            cell.append(f" {a.priority.upper()} {a.code}{mark} ",
                        style=PRIORITY_STYLE[a.priority])
            cell.append(" ")
        nan = math.nan
        bp = (f"{v.get('sbp', nan):.0f}/{v.get('dbp', nan):.0f} ({v.get('map', nan):.0f})"
              if "sbp" in v else "—")
        table.add_row(
            f"{ward}/{bed}",
            Text(f"{v.get('hr', nan):.0f}", style=_band_style("hr", v.get("hr", nan))),
            Text(bp, style=_band_style("sbp", v.get("sbp", nan))),
            Text(f"{v.get('glucose', nan):.0f}" if "glucose" in v else "—",
                 style=_band_style("glucose", v.get("glucose", nan))),
            cell,
        )
    log_table = Table(title="latest alarm events (from wardwatch/v1/alerts)", expand=False)
    for col in ("sim time", "bed", "priority", "state", "message"):
        log_table.add_column(col)
    for ev in list(events)[:8]:
        log_table.add_row(
            f"+{(ev['t'] - sim_start) / 60:.0f} min", f"{ev['ward']}/{ev['bed']}",
            Text(ev["priority"], style=PRIORITY_STYLE[ev["priority"]]), ev["state"], ev["message"],
        )
    return Group(table, log_table)


async def run_demo(settings: Settings, *, broker_given: bool, beds: int, speed: float,
                   duration: float, plain: bool, store_given: bool,
                   simulated: float = 0.0) -> None:
    """Run broker (unless given), ward, daemon and view until Ctrl-C, ``duration`` wall
    seconds or ``simulated`` seconds of the ward's time, whichever comes first."""
    if not broker_given:  # before anything starts: a missing extra is a one-line error
        import amqtt.broker  # noqa: F401
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        store = settings.store.dir
        if not store_given:
            store = stack.enter_context(tempfile.TemporaryDirectory(prefix="wardwatch-demo-"))
        url = settings.mqtt.url if broker_given else f"mqtt://127.0.0.1:{_free_port()}"
        settings = dataclasses.replace(
            settings,
            mqtt=dataclasses.replace(settings.mqtt, url=url, client_id="wardwatch-demo"),
            ingest=dataclasses.replace(settings.ingest, max_future_s=365 * 86_400.0),
            store=dataclasses.replace(settings.store, dir=store),
            http=dataclasses.replace(settings.http, port=settings.http.port or _free_port()),
        )
        async with contextlib.AsyncExitStack() as astack:
            if not broker_given:
                await astack.enter_async_context(_embedded_broker(int(url.rsplit(":", 1)[1])))
            await _run(settings, beds, speed, duration, simulated, plain)


async def _run(settings: Settings, beds: int, speed: float, duration: float, simulated: float,
               plain: bool) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    daemon = Daemon(settings)
    password = secrets.token_urlsafe(9)
    daemon.accounts.add_user("demo", password, "nurse", replace=True)
    station = (f"station page on http://{settings.http.host}:{settings.http.port}/ "
               f"(user demo, password {password})")
    events: deque[dict[str, Any]] = deque(maxlen=50)
    sim_start = time.time()
    async with asyncio.TaskGroup() as tg:
        daemon_stop = asyncio.Event()
        run = tg.create_task(daemon.run(daemon_stop), name="daemon")
        await asyncio.wait_for(daemon.subscribed.wait(), 60)
        if duration > 0:  # counted from when the daemon is ready
            loop.call_later(duration, stop.set)
        watch = tg.create_task(_watch_alerts(settings.mqtt.url, events, plain), name="station")
        sim = _Ward(until_s=simulated)
        ward = tg.create_task(_simulate(settings.mqtt.url, beds, speed, stop, sim), name="ward")
        if plain:
            print(f"wardwatch demo: {beds} beds at {speed:g}x on {redacted(settings.mqtt.url)}; "
                  f"metrics on :{settings.metrics.port or '-'}; Ctrl-C to stop", flush=True)
            print(station, flush=True)
            await stop.wait()
        else:
            print(station, flush=True)
            with Live(_view(daemon, events, sim_start), refresh_per_second=2) as live:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
                    live.update(_view(daemon, events, sim_start))
        await ward
        await _drain(daemon, sim, within=30)
        daemon_stop.set()
        await run
        watch.cancel()
    reg = daemon.registry
    accepted = reg.get_sample_value("wardwatch_ingest_observations_total", {"outcome": "accepted"})
    fired = sum(
        s.value for metric in reg.collect() if metric.name == "wardwatch_alarm_events"
        for s in metric.samples if s.name.endswith("_total") and s.labels["state"] == "firing"
    )
    print(f"demo done: {accepted or 0:.0f} observations scored, {fired:.0f} alarms fired, "
          f"{sim.simulated_s / 60:.0f} simulated minutes")
