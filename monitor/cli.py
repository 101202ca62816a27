"""``wardwatch`` command line: ``run`` the daemon, or ``demo`` a simulated ward on one machine."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, Protocol

from monitor.config import load
from monitor.errors import WardwatchError


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if args.broker:
        out.setdefault("mqtt", {})["url"] = args.broker
    if args.command == "bridge":
        if args.listen:
            out.setdefault("bridge", {})["listen"] = args.listen
        if args.metrics_port is not None:
            out.setdefault("bridge", {})["metrics_port"] = args.metrics_port
        if args.store:
            out.setdefault("store", {})["dir"] = args.store
        return out
    if args.influx:
        out.setdefault("influx", {})["url"] = args.influx
    if args.metrics_port is not None:
        out.setdefault("metrics", {})["port"] = args.metrics_port
    if args.http_port is not None:
        out.setdefault("http", {})["port"] = args.http_port
    if getattr(args, "store", None):
        out.setdefault("store", {})["dir"] = args.store
    return out


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML settings (see deploy/wardwatch.toml)")
    p.add_argument("--broker", metavar="URL", help="MQTT broker, mqtt://HOST:PORT or mqtts://")
    p.add_argument("--influx", metavar="URL", help="InfluxDB URL (default: SQLite history)")
    p.add_argument("--metrics-port", type=int, metavar="N", help="Prometheus /metrics port")
    p.add_argument("--http-port", type=int, metavar="N", help="HTTP port (/healthz, /api/beds)")
    p.add_argument("--store", metavar="DIR", help="state directory (spool, SQLite history)")


class _Runs(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


async def _until_signalled(make: Callable[[], _Runs]) -> None:
    """``make()`` (the daemon, a cluster worker, the bridge) runs until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await make().run(stop)


def main(argv: list[str] | None = None) -> int:
    from simulators.seeds import REPORTING_SEED  # a constant; the simulators load lazily

    parser = argparse.ArgumentParser(
        prog="wardwatch", description="Bedside vital-sign monitoring and early warning."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the daemon against a broker")
    _add_common(p_run)
    p_run.add_argument("--worker-index", type=int, metavar="K",
                       help="as worker K of a cluster ([cluster] settings; deploy/cluster/)")
    p_run.add_argument("--worker-of", type=int, metavar="N",
                       help="with --worker-index: the cluster's expected worker count")
    p_bridge = sub.add_parser(
        "bridge", help="HL7 v2 ORU^R01 over MLLP from bedside devices, spooled, to the broker")
    p_bridge.add_argument("--listen", metavar="HOST:PORT",
                          help="where devices connect (default [bridge] listen, "
                               "127.0.0.1:2575)")
    p_bridge.add_argument("--broker", metavar="URL", help="MQTT broker, mqtt://HOST:PORT or "
                          "mqtts://")
    p_bridge.add_argument("--store", metavar="DIR", help="state directory (the spool)")
    p_bridge.add_argument("--config", metavar="FILE", help="TOML settings ([bridge], [mqtt], "
                          "[pseudonym]; see deploy/wardwatch.toml)")
    p_bridge.add_argument("--metrics-port", type=int, metavar="N",
                          help="the bridge's /metrics port (default 9104; 0: none)")
    p_demo = sub.add_parser(
        "demo", help="a simulated ward through the whole pipeline, no external server needed"
    )
    _add_common(p_demo)
    p_demo.add_argument("--beds", type=int, default=8, help="simulated beds (default 8)")
    p_demo.add_argument("--speed", type=float, default=30.0,
                        help="simulated seconds per wall second (default 30)")
    p_demo.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many wall seconds (default: until Ctrl-C)")
    p_demo.add_argument("--simulated", metavar="SPAN", type=_duration, default=0.0,
                        help="stop once the ward has published this much simulated time "
                             "(e.g. 1h); a machine that cannot keep --speed takes longer")
    p_demo.add_argument("--plain", action="store_true",
                        help="print alarm lines instead of the live table")
    p_score = sub.add_parser(
        "score", help="score a recorded stream (CSV timestamp,value) with the live kernels"
    )
    p_score.add_argument("--metric", required=True,
                         choices=["hr", "sbp", "dbp", "map", "glucose", "generic"])
    p_score.add_argument("--input", required=True, metavar="IN.csv")
    p_score.add_argument("--output", required=True, metavar="OUT.csv")
    p_score.add_argument("--unit", help="UCUM unit of the values (default: canonical)")
    p_score.add_argument("--ack-after", metavar="S", type=float, default=120.0,
                         help="a modelled responder acknowledges each alarm S seconds after "
                              "it sounds (0: nobody answers; default 120)")
    p_alarms = sub.add_parser(
        "alarms", help="the alarm burden per bed and rule, or the audit log, from the store")
    p_alarms.add_argument("what", choices=["burden", "audit"])
    p_alarms.add_argument("--config", metavar="FILE", help="TOML settings (for [store] dir)")
    p_alarms.add_argument("--store", metavar="DIR", help="state directory (alarms.db)")
    p_alarms.add_argument("--days", type=float, default=1.0, help="burden window (default 1)")
    p_alarms.add_argument("--ward", help="audit: only this ward")
    p_alarms.add_argument("--limit", type=int, default=50, help="audit: newest N lines")
    p_alarms.add_argument("--json", action="store_true", help="JSON instead of a table")
    p_users = sub.add_parser("users", help="station page accounts: add or list")
    p_users.add_argument("action", choices=["add", "list"])
    p_users.add_argument("username", nargs="?")
    p_users.add_argument("--role", choices=["viewer", "nurse", "admin"], default="nurse")
    p_users.add_argument("--ward", action="append", metavar="WARD",
                         help="limit the user to this ward (repeat for several; "
                              "default: every ward)")
    p_users.add_argument("--password-stdin", action="store_true",
                         help="read the password from standard input (default: prompt)")
    p_users.add_argument("--reset", action="store_true",
                         help="replace an existing user's password and role")
    p_users.add_argument("--config", metavar="FILE", help="TOML settings (for [store] dir)")
    p_users.add_argument("--store", metavar="DIR", help="state directory (station.db)")
    p_sim = sub.add_parser(
        "simulate", help="virtual patients with ground truth: publish over MQTT or write files")
    p_sim.add_argument("--patients", type=int, default=20)
    p_sim.add_argument("--days", type=float, default=1.0, help="stay per patient (default 1)")
    p_sim.add_argument("--scenario-mix", metavar="MIX",
                       help="e.g. stable=0.5,sepsis=0.2,hypoglycaemia=0.3 (default: a ward mix)")
    p_sim.add_argument("--seed", type=int, default=1)
    where = p_sim.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR",
                       help="write streams.csv, events.csv and artifacts.csv")
    where.add_argument("--broker", metavar="URL", help="publish over MQTT, per the wire contract")
    p_sim.add_argument("--speed", type=float, default=1.0,
                       help="observation seconds per wall second (0: as fast as possible)")
    p_rep = sub.add_parser("replay", help="publish a recorded streams.csv or WFDB record over MQTT")
    p_rep.add_argument("file", metavar="FILE",
                       help="CSV (ward,bed,metric,timestamp,value), or a PhysioNet WFDB "
                            "numerics record (NAME.hea or NAME)")
    p_rep.add_argument("--ward", default="WFDB", help="WFDB: the ward to publish as")
    p_rep.add_argument("--bed", help="WFDB: the bed to publish as (default: the record name)")
    p_rep.add_argument("--broker", required=True, metavar="URL")
    p_rep.add_argument("--speed", type=float, default=1.0,
                       help="observation seconds per wall second (0: as fast as possible)")
    p_rep.add_argument("--keep-times", action="store_true",
                       help="send the recorded timestamps (default: move the start to now)")
    p_eval = sub.add_parser("evaluate", help="a virtual cohort through wardwatch and baselines")
    p_eval.add_argument("--patients", type=int, default=200)
    p_eval.add_argument("--days", type=float, default=1.0)
    p_eval.add_argument("--scenario-mix", metavar="MIX")
    p_eval.add_argument("--seed", type=_seed, default=REPORTING_SEED,
                        help=f"cohort seed (default {REPORTING_SEED}, the reporting seed, "
                             "never used for tuning); 'fresh' draws one now")
    p_eval.add_argument("--json", metavar="FILE", help="the figures as JSON")
    p_eval.add_argument("--report", metavar="FILE",
                        help="the figures as Markdown, with PNG plots beside it")
    p_eval.add_argument("--cgm", metavar="DIR",
                        help="real CGM recordings (*.csv, *.csv.gz: timestamp,value in mg/dL) "
                             "instead of the virtual cohort, against the glucose baselines")
    p_eval.add_argument("--cadence", metavar="STEP", type=_duration,
                        help="--cgm: subsample to this cadence first (e.g. 15m)")
    p_eval.add_argument("--ack-after", metavar="S", type=float, default=120.0,
                        help="a modelled responder acknowledges each alarm S seconds after "
                             "it sounds (0: nobody answers; default 120)")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        extra = _extra_for(root)
        if extra is None:
            raise
        print(f"wardwatch {args.command}: needs {root}, which is not installed here: "
              f"pip install 'wardwatch[{extra}]'", file=sys.stderr)
        return 2


def _extra_for(library: str) -> str | None:
    """The first extra of the installed wardwatch (pyproject's optional dependencies)
    that brings ``library``; None when none does (or wardwatch is not installed)."""
    import importlib.metadata
    import re

    try:
        requires = importlib.metadata.requires("wardwatch") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    # the distributions that bring a module ("nats" comes with nats-py), where known
    names = {d.lower().replace("-", "_")
             for d in importlib.metadata.packages_distributions().get(library, [])}
    names.add(library.lower())
    for req in requires:
        m = re.match(r"([A-Za-z0-9_.-]+).*;\s*extra\s*==\s*['\"](\w+)['\"]", req)
        if m and m[1].lower().replace("-", "_") in names and m[2] != "dev":
            return m[2]
    return None


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("simulate", "evaluate", "replay", "score"):
        from monitor import cli_recordings

        command: Callable[[argparse.Namespace], int] = getattr(cli_recordings, args.command)
        return command(args)
    if args.command == "users":
        return _users(args)
    if args.command == "alarms":
        return _alarms(args)
    if getattr(args, "worker_of", None) is not None and args.worker_index is None:
        print("wardwatch run: --worker-of needs --worker-index", file=sys.stderr)
        return 2
    try:
        settings = load(args.config, overrides=_overrides(args))
    except WardwatchError as exc:
        print(f"wardwatch: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per write otherwise
    try:
        if args.command == "run" and args.worker_index is not None:
            from monitor.cluster import Worker

            index, of = args.worker_index, args.worker_of or args.worker_index + 1
            asyncio.run(_until_signalled(lambda: Worker(settings, index=index, of=of)))
        elif args.command == "run":
            from monitor.daemon import Daemon

            asyncio.run(_until_signalled(lambda: Daemon(settings, own_process=True)))
        elif args.command == "bridge":
            from edge.bridge import Bridge

            asyncio.run(_until_signalled(lambda: Bridge(settings)))
        else:
            from monitor.demo import run_demo

            asyncio.run(run_demo(
                settings, broker_given=bool(args.broker), beds=args.beds, speed=args.speed,
                duration=args.duration, simulated=args.simulated, plain=args.plain,
                store_given=bool(args.store),
            ))
    except WardwatchError as exc:
        print(f"wardwatch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _seed(text: str) -> int:
    if text.strip().lower() == "fresh":
        from simulators.seeds import fresh_seed

        return fresh_seed()
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is an integer or 'fresh', got {text!r}") \
            from None


def _duration(text: str) -> float:
    """``15m``, ``300s``, ``1h`` or plain seconds."""
    units = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
    raw = text.strip().lower()
    for suffix in sorted(units, key=len, reverse=True):
        if raw.endswith(suffix):
            raw, scale = raw[: -len(suffix)], units[suffix]
            break
    else:
        scale = 1.0
    try:
        secs = float(raw) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 5m, 15m)") from None
    if not secs > 0:
        raise argparse.ArgumentTypeError(f"a duration must be positive: {text!r}")
    return secs


def _users(args: argparse.Namespace) -> int:
    import getpass
    from pathlib import Path

    from monitor.station.auth import Accounts

    try:
        store_dir = args.store or load(args.config).store.dir
        accounts = Accounts(Path(store_dir).expanduser() / "station.db")
        if args.action == "list":
            for name, role, wards in accounts.users():
                print(f"{name}\t{role}\t{wards or 'all wards'}")
            return 0
        if not args.username:
            raise WardwatchError("users add: give a username")
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.username}: ")
            if getpass.getpass("again: ") != password:
                raise WardwatchError("the passwords differ")
        accounts.add_user(args.username, password, args.role, replace=args.reset,
                          wards=args.ward or ())
    except WardwatchError as exc:
        print(f"wardwatch: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.username} ({args.role}) saved in {accounts.path}", file=sys.stderr)
    return 0


def _alarms(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from monitor.alarmstore import AlarmStore

    try:
        store_dir = args.store or load(args.config).store.dir
        path = Path(store_dir).expanduser() / "alarms.db"
        if not path.exists():
            raise WardwatchError(f"no alarm store at {path}")
        store = AlarmStore(path)
    except WardwatchError as exc:
        print(f"wardwatch: {exc}", file=sys.stderr)
        return 2
    if args.what == "burden":
        rows = [asdict(b) for b in store.burden(args.days)]
        cols = ["ward", "bed", "code", "priority", "alarms", "per_day"]
    else:
        rows = store.audit_log(ward=args.ward, limit=args.limit)
        cols = ["clock", "ward", "bed", "code", "priority", "action", "by", "detail"]
    store.close()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    title = (f"alarms fired per bed and rule, last {args.days:g} day(s)" if args.what == "burden"
             else "audit log, newest first")
    table = Table(*cols, title=title)
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            if c == "clock":
                v = datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S")
            elif c == "per_day":
                v = f"{v:.1f}"
            cells.append(str(v))
        table.add_row(*cells)
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
