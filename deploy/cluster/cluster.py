#!/usr/bin/env python3
"""A loopback wardwatch cluster: three NATS nodes (MQTT + JetStream) and N workers.

Each NATS node speaks MQTT (devices publish to any node, per the wire contract) and
JetStream; the three form one cluster, and the intake stream, the workers' key-value
bucket and the MQTT sessions are replicated on all three. A subject mapping on every
node puts a partition number, computed from (ward, bed), in front of each observation
and control topic::

    wardwatch/v1/obs/4A/12  ->  wardwatch.part.{partition(P, ward, bed)}.obs.4A.12

so each bed always lands in the same partition. A JetStream stream keeps them, and each
partition is read in order by the one worker that holds it (``monitor/streamintake.py``,
``monitor/cluster.py``).

    python3 deploy/cluster/cluster.py start --dir /tmp/ww-cluster --workers 2
    python3 deploy/cluster/cluster.py stop --dir /tmp/ww-cluster

Standard library only, like deploy/dev/services.py (which it uses to install
``nats-server`` from Debian when it is missing). The tests import :class:`Cluster`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dev"))
from services import (
    ServiceError,
    _terminate,
    _wait_http,
    _wait_tcp,
    ensure_installed,
    free_port,
)

REPO = Path(__file__).resolve().parents[2]
#: the kinds of topic partitioned by bed (wire contract: wardwatch/v1/{kind}/{ward}/{bed})
PARTITIONED = ("obs", "ack", "admit", "status")
START_TIMEOUT_S = 60.0


def mappings(partitions: int) -> dict[str, str]:
    """NATS subject mappings: each (ward, bed) topic gets its partition in front, so one
    filter (``wardwatch.part.{p}.>``) reads a partition's observations and commands."""
    part = f"{{{{partition({partitions},1,2)}}}}"
    out = {}
    for kind in PARTITIONED:
        out[f"wardwatch.v1.{kind}.*.*"] = \
            f"wardwatch.part.{part}.{kind}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"
    # acknowledgements under the station's user name: ack/{ward}/{bed}/{client}
    out["wardwatch.v1.ack.*.*.*"] = \
        f"wardwatch.part.{part}.ack.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}"
    return out


def node_config(name: str, *, client: int, mqtt: int, route: int, monitor: int,
                routes: list[int], store: Path, partitions: int) -> str:
    """One node's nats-server configuration."""
    maps = "\n".join(f'  "{k}": "{v}"' for k, v in mappings(partitions).items())
    peers = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
    return f"""# wardwatch cluster node {name} (deploy/cluster/cluster.py)
server_name: {name}
listen: 127.0.0.1:{client}
http: 127.0.0.1:{monitor}
max_payload: 8MB
jetstream {{
  store_dir: "{store}"
  max_memory_store: 256MB
  max_file_store: 4GB
}}
cluster {{
  name: wardwatch
  listen: 127.0.0.1:{route}
  routes: [{peers}]
}}
mqtt {{
  listen: 127.0.0.1:{mqtt}
  stream_replicas: 3
}}
mappings {{
{maps}
}}
"""


@dataclass
class Node:
    name: str
    client: int  # NATS protocol (the workers' key-value store)
    mqtt: int
    route: int
    monitor: int
    pid: int = 0

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt}"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.client}"


@dataclass
class Cluster:
    """Starts and stops the nodes and workers of a loopback cluster in ``root``."""

    root: Path
    partitions: int = 12
    nodes: list[Node] = field(default_factory=list)
    workers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        # what the workers present to each other's station (monitor/station/peers.py)
        self.secret = self.root / "peer.secret"
        if not self.secret.exists():
            fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")

    # -- brokers -----------------------------------------------------------------
    def start(self, size: int = 3) -> None:
        ensure_installed(("nats-server",))
        self.nodes = [Node(f"n{i + 1}", free_port(), free_port(), free_port(), free_port())
                      for i in range(size)]
        for node in self.nodes:
            self.start_node(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in self.nodes:
            # ready: JetStream has a meta leader (the cluster formed), MQTT listens
            if not (_wait_http(f"http://127.0.0.1:{node.monitor}/healthz", deadline)
                    and _wait_tcp(node.mqtt, deadline)):
                self.stop()
                raise ServiceError(f"nats-server {node.name} did not become ready; "
                                   f"see {self.root / node.name}.log")
        self._save()

    def start_node(self, node: Node) -> None:
        """Start (or restart) one node with its configuration and data."""
        conf = self.root / f"{node.name}.conf"
        routes = [n.route for n in self.nodes if n is not node]
        conf.write_text(node_config(node.name, client=node.client, mqtt=node.mqtt,
                                    route=node.route, monitor=node.monitor, routes=routes,
                                    store=self.root / f"{node.name}-js",
                                    partitions=self.partitions))
        log = open(self.root / f"{node.name}.log", "ab")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen(["nats-server", "-c", str(conf)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        node.pid = proc.pid
        self._procs[node.name] = proc

    def wait_node(self, node: Node) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        return (_wait_http(f"http://127.0.0.1:{node.monitor}/healthz", deadline)
                and _wait_tcp(node.mqtt, deadline))

    def kill_node(self, node: Node) -> None:
        """SIGKILL one node (its data stays, for a restart)."""
        os.kill(node.pid, signal.SIGKILL)
        proc = self._procs.pop(node.name, None)
        if proc is not None:
            proc.wait()

    @property
    def mqtt_urls(self) -> list[str]:
        return [n.mqtt_url for n in self.nodes]

    @property
    def nats_urls(self) -> list[str]:
        return [n.nats_url for n in self.nodes]

    # -- workers -----------------------------------------------------------------
    def worker_config(self, index: int, *, checkpoint_s: float = 1.0, http_port: int = 0,
                      extra: str = "") -> Path:
        """A worker's TOML: its own store, the cluster's brokers and key-value store, and
        its station on ``http_port`` (0: none)."""
        # its node first, then the others: its connections go to the next when one fails
        first = index % len(self.nodes)
        nodes = self.nodes[first:] + self.nodes[:first]
        path = self.root / f"worker{index}.toml"
        path.write_text(f"""# worker {index} of the loopback cluster
log_level = "INFO"
[mqtt]
url = "{','.join(n.mqtt_url for n in nodes)}"
[http]
port = {http_port}
[store]
dir = "{self.root / f'worker{index}'}"
[cluster]
partitions = {self.partitions}
nats = "{','.join(self.nats_urls)}"
checkpoint_s = {checkpoint_s}
peer_secret_file = "{self.secret}"
{extra}
""")
        return path

    def start_worker(self, index: int, of: int, *, python: str = sys.executable,
                     metrics_port: int = 0, checkpoint_s: float = 1.0, http_port: int = 0,
                     extra: str = "") -> subprocess.Popen[bytes]:
        conf = self.worker_config(index, checkpoint_s=checkpoint_s, http_port=http_port,
                                  extra=extra)
        log = open(self.root / f"worker{index}.log", "ab")  # noqa: SIM115
        argv = [python, "-m", "monitor.cli", "run", "--config", str(conf),
                "--worker-index", str(index), "--worker-of", str(of),
                "--metrics-port", str(metrics_port)]
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                cwd=REPO, start_new_session=True)
        log.close()
        self.workers[index] = proc
        return proc

    def kill_worker(self, index: int) -> None:
        proc = self.workers.pop(index)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_worker(self, index: int, timeout: float = 60.0) -> int:
        proc = self.workers.pop(index)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    # -- all ---------------------------------------------------------------------
    def stop(self) -> None:
        for index in list(self.workers):
            self.stop_worker(index)
        for node in self.nodes:
            proc = self._procs.pop(node.name, None)
            if proc is not None:
                _terminate(proc.pid, proc)
        (self.root / "state.json").unlink(missing_ok=True)

    def _save(self) -> None:
        (self.root / "state.json").write_text(json.dumps({
            "partitions": self.partitions,
            "nodes": [vars(n) for n in self.nodes],
        }, indent=2))

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("start", "stop"))
    ap.add_argument("--dir", required=True, help="configs, data and logs")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--workers", type=int, default=0, help="wardwatch workers to start")
    ap.add_argument("--http-port", type=int, default=0, metavar="BASE",
                    help="worker K serves the station on BASE+K (0: none)")
    args = ap.parse_args(argv)
    root = Path(args.dir)
    if args.action == "stop":
        state = json.loads((root / "state.json").read_text())
        for n in state["nodes"]:
            _terminate(n["pid"], None)
        for pidfile in root.glob("worker*.pid"):
            _terminate(int(pidfile.read_text()), None)
            pidfile.unlink()
        (root / "state.json").unlink()
        return 0
    cluster = Cluster(root, partitions=args.partitions)
    cluster.start(args.nodes)
    stations = []
    for k in range(args.workers):
        port = args.http_port + k if args.http_port else 0
        proc = cluster.start_worker(k, args.workers, http_port=port)
        (root / f"worker{k}.pid").write_text(str(proc.pid))
        if port:
            stations.append(f"http://127.0.0.1:{port}/")
    print(json.dumps({"mqtt": cluster.mqtt_urls, "nats": cluster.nats_urls,
                      "workers": args.workers, "partitions": args.partitions,
                      "stations": stations}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
