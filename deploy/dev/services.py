#!/usr/bin/env python3
"""Start and stop the real services wardwatch talks to, on free loopback ports.

Mosquitto, InfluxDB (Debian's 1.6, v1 API), Prometheus and Alertmanager are installed
with apt when missing, started with their configuration and data in one directory, and
stopped cleanly. Nothing listens on a non-loopback address.

    python3 deploy/dev/services.py start --dir /tmp/ww-svc   # prints the addresses as JSON
    python3 deploy/dev/services.py stop --dir /tmp/ww-svc

The test fixtures import this module and use :class:`Services` directly. Standard
library only: it runs before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ALL = ("mosquitto", "influxdb", "prometheus", "alertmanager")

# binary → Debian package
PACKAGES = {
    "mosquitto": ("/usr/sbin/mosquitto", "mosquitto"),
    "influxdb": ("/usr/bin/influxd", "influxdb"),
    "prometheus": ("/usr/bin/prometheus", "prometheus"),
    "alertmanager": ("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager"),
    # not a server: the browser the station-page tests drive (with its WebDriver)
    "chromium": ("/usr/bin/chromium", "chromium"),
    "chromedriver": ("/usr/bin/chromedriver", "chromium-driver"),
    # checks the shipped systemd unit (systemd-analyze verify)
    "systemd-analyze": ("/usr/bin/systemd-analyze", "systemd"),
    # the clustered broker of deploy/cluster/ (MQTT + JetStream)
    "nats-server": ("/usr/sbin/nats-server", "nats-server"),
}

START_TIMEOUT_S = 60.0
REPO = Path(__file__).resolve().parents[2]


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_installed(names: tuple[str, ...] = ALL) -> None:
    """Install the Debian packages of ``names`` whose binaries are missing."""
    missing = [PACKAGES[n][1] for n in names if not Path(PACKAGES[n][0]).exists()]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"services: installing {' '.join(missing)} with apt", file=sys.stderr)
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )
    # Debian's maintainer scripts may start the packaged units on default ports; ours
    # run from our own config, so stop theirs where systemd is present.
    if shutil.which("systemctl") and Path("/run/systemd/system").exists():
        units = ["mosquitto", "influxdb", "prometheus", "prometheus-alertmanager"]
        subprocess.run([*sudo, "systemctl", "stop", *units], check=False, capture_output=True)


def _wait_tcp(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


def _wait_http(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status < 300:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


@dataclass
class Service:
    """One started server: its address and process."""

    name: str
    port: int
    url: str
    pid: int
    log: str
    extra: dict[str, str] = field(default_factory=dict)


class Services:
    """Starts services in ``root`` and stops them again; a context manager.

    ``root`` holds every config, data directory and log. ``state.json`` in it records
    the pids so that ``stop`` works from another process.
    """

    def __init__(self, root: str | Path | None = None, *, webhook: str | None = None,
                 rules_for: str | None = None) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="wardwatch-svc-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.webhook = webhook  # Alertmanager's receiver
        self.rules_for = rules_for  # replaces every `for:` of deploy/prometheus/*.rules.yml
        self.started: dict[str, Service] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, names: tuple[str, ...] = ALL, *, ports: dict[str, int] | None = None) -> None:
        ensure_installed(names)
        ports = ports or {}
        # Alertmanager before Prometheus, so Prometheus has somewhere to send alerts.
        order = [n for n in ("mosquitto", "influxdb", "alertmanager", "prometheus") if n in names]
        for name in order:
            getattr(self, f"_start_{name}")(ports.get(name) or free_port())
        self._save()

    def stop(self, names: tuple[str, ...] | None = None, *, kill: bool = False) -> None:
        """Stop services (SIGTERM), or with ``kill`` crash them (SIGKILL: no clean save)."""
        for name in list(names or self.started):
            svc = self.started.pop(name, None)
            if svc is None:
                continue
            proc = self._procs.pop(name, None)
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(svc.pid, signal.SIGKILL)
                if proc is not None:
                    proc.wait()
                continue
            _terminate(svc.pid, proc)
        self._save()

    def _save(self) -> None:
        state = {n: s.__dict__ for n, s in self.started.items()}
        (self.root / "state.json").write_text(json.dumps(state, indent=2))

    def describe(self) -> dict[str, dict[str, object]]:
        return {n: dict(s.__dict__) for n, s in self.started.items()}

    def _spawn(self, name: str, argv: list[str], port: int, url: str, ready: str | None) -> None:
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        ok = _wait_http(ready, deadline) if ready else _wait_tcp(port, deadline)
        if not ok or proc.poll() is not None:
            _terminate(proc.pid, proc)
            tail = log.read_text(errors="replace")[-2000:]
            raise ServiceError(f"{name} did not start on 127.0.0.1:{port}; log tail:\n{tail}")
        self._procs[name] = proc
        self.started[name] = Service(name, port, url, proc.pid, str(log))

    # -- the services --------------------------------------------------------------
    def _start_mosquitto(self, port: int) -> None:
        data = self.root / "mosquitto"
        data.mkdir(exist_ok=True)
        conf = data / "mosquitto.conf"
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        conf.write_text(
            f"""# written by deploy/dev/services.py
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {data}/
autosave_interval 1
# The default of 1000 silently drops QoS 1 messages for a slow subscriber.
max_queued_messages 1000000
max_inflight_messages 1000
user {user}
log_dest stderr
log_type error
log_type warning
log_type notice
"""
        )
        self._spawn(
            "mosquitto", ["/usr/sbin/mosquitto", "-c", str(conf)], port, f"mqtt://127.0.0.1:{port}",
            None,
        )

    def _start_influxdb(self, port: int) -> None:
        data = self.root / "influxdb"
        data.mkdir(exist_ok=True)
        rpc = free_port()
        conf = data / "influxdb.conf"
        conf.write_text(
            f"""# written by deploy/dev/services.py
reporting-enabled = false
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{data}/meta"
[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
"""
        )
        self._spawn(
            "influxdb", ["/usr/bin/influxd", "-config", str(conf)], port,
            f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/ping",
        )

    def _start_alertmanager(self, port: int) -> None:
        data = self.root / "alertmanager"
        data.mkdir(exist_ok=True)
        conf = data / "alertmanager.yml"
        receiver = (
            f"""  - name: webhook
    webhook_configs:
      - url: "{self.webhook}"
        send_resolved: true
"""
            if self.webhook
            else "  - name: webhook\n"
        )
        conf.write_text(
            f"""# written by deploy/dev/services.py
route:
  receiver: webhook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
{receiver}"""
        )
        self._spawn(
            "alertmanager",
            [
                "/usr/bin/prometheus-alertmanager",
                f"--config.file={conf}",
                f"--storage.path={data}/data",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            port,
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{port}/-/ready",
        )

    def _start_prometheus(self, port: int) -> None:
        data = self.root / "prometheus"
        data.mkdir(exist_ok=True)
        targets = data / "targets.json"
        if not targets.exists():
            targets.write_text("[]")
        rules = sorted(str(p) for p in (REPO / "deploy" / "prometheus").glob("*.rules.yml"))
        if self.rules_for is not None:  # tests: the same rules, with every `for:` shortened
            copies = []
            for src in rules:
                dst = data / Path(src).name
                dst.write_text(re.sub(r"(?m)^(\s*for:\s*)\S+", rf"\g<1>{self.rules_for}",
                                      Path(src).read_text()))
                copies.append(str(dst))
            rules = copies
        am = self.started.get("alertmanager")
        alerting = (
            f"""alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am.port}"]
"""
            if am
            else ""
        )
        conf = data / "prometheus.yml"
        conf.write_text(
            f"""# written by deploy/dev/services.py
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: {json.dumps(rules)}
{alerting}scrape_configs:
  - job_name: wardwatch
    file_sd_configs:
      - files: ["{targets}"]
"""
        )
        self._spawn(
            "prometheus",
            [
                "/usr/bin/prometheus",
                f"--config.file={conf}",
                f"--storage.tsdb.path={data}/tsdb",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            port,
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{port}/-/ready",
        )
        self.started["prometheus"].extra["targets_file"] = str(targets)

    def set_scrape_targets(self, targets: list[str]) -> None:
        """Point Prometheus' ``wardwatch`` job at ``host:port`` targets (file discovery)."""
        path = Path(self.started["prometheus"].extra["targets_file"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": targets, "labels": {"env": "test"}}]))
        tmp.replace(path)


def _terminate(pid: int, proc: subprocess.Popen[bytes] | None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_start = sub.add_parser("start", help="install if missing, start, print addresses as JSON")
    p_start.add_argument("--dir", help="config, data and logs (default: a new temp dir)")
    p_start.add_argument("--only", default=",".join(ALL), help="comma-separated subset")
    p_start.add_argument("--webhook", help="Alertmanager webhook receiver URL")
    p_stop = sub.add_parser("stop", help="stop what 'start --dir DIR' started")
    p_stop.add_argument("--dir", required=True)
    sub.add_parser("install", help="only install the missing packages (and the test browser)")
    args = parser.parse_args(argv)

    if args.cmd == "install":
        ensure_installed((*ALL, "chromium", "chromedriver", "systemd-analyze"))
        return 0
    if args.cmd == "start":
        names = tuple(n.strip() for n in args.only.split(",") if n.strip())
        unknown = set(names) - set(ALL)
        if unknown:
            parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
        svc = Services(args.dir, webhook=args.webhook)
        try:
            svc.start(names)
        except (ServiceError, subprocess.CalledProcessError) as exc:
            svc.stop()
            print(f"services: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"dir": str(svc.root), **svc.describe()}, indent=2))
        return 0
    state_file = Path(args.dir) / "state.json"
    if not state_file.exists():
        print(f"services: nothing started in {args.dir}", file=sys.stderr)
        return 1
    for name, svc_state in json.loads(state_file.read_text()).items():
        _terminate(int(svc_state["pid"]), None)
        print(f"services: stopped {name}", file=sys.stderr)
    state_file.write_text("{}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
