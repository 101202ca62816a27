"""Small helpers for the integration tests: MQTT, InfluxQL and polling."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import httpx
import orjson

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def mqtt_client(url: str) -> aiomqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    return aiomqtt.Client(host, int(port))


async def publish(url: str, topic: str, payload: Any, qos: int = 1) -> None:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    async with mqtt_client(url) as c:
        await c.publish(topic, data, qos=qos)


async def eventually(probe: Callable[[], Awaitable[T | None] | T | None], what: str,
                     within: float = 30.0) -> T:
    """Poll ``probe`` (plain or async) until it returns something truthy; fail after
    ``within`` seconds. A bound on waiting for an effect, not a timed assertion."""
    deadline = time.monotonic() + within
    while True:
        got = probe()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


async def influxql(url: str, db: str, q: str) -> list[dict[str, Any]]:
    """Rows of the first series of an InfluxQL query, as dicts."""
    async with httpx.AsyncClient(base_url=url) as http:
        resp = await http.get("/query", params={"db": db, "q": q})
    resp.raise_for_status()
    res = resp.json()["results"][0]
    if "series" not in res:
        return []
    s = res["series"][0]
    return [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]


def spawn_daemon(settings: Any, store: Path, http_port: int,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``wardwatch run`` in its own process (SQLite history in the store); log in the store."""
    env = {**os.environ, "WARDWATCH_MQTT_CLIENT_ID": settings.mqtt.client_id, **(env or {})}
    with open(store / "daemon.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--broker", settings.mqtt.url,
             "--store", str(store), "--metrics-port", "0", "--http-port", str(http_port)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)


class NotifySocket:
    """systemd's end of sd_notify: a datagram socket a child process reports to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(1.0)
        self.got: list[str] = []

    def until(self, field: str, within: float, proc: subprocess.Popen[bytes],
              log: Path) -> None:
        """Read until ``field`` (``READY=1``...) has come; fail if the process dies first
        (its log's tail in the message) or after ``within`` seconds."""
        deadline = time.monotonic() + within
        while field not in self.got:
            assert time.monotonic() < deadline, (field, self.got)
            assert proc.poll() is None or field == "STOPPING=1", log.read_text()[-2000:]
            try:
                self.got.extend(self.sock.recv(4096).decode().split("\n"))
            except TimeoutError:
                continue

    def close(self) -> None:
        self.sock.close()
