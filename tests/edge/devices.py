"""What the bridge tests need: HL7 messages as devices write them, an MLLP client on a plain
socket, a running bridge, and an MQTT subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson

from edge.bridge import Bridge
from monitor.config import (
    BridgeSettings,
    MqttSettings,
    PseudonymSettings,
    Settings,
    StoreSettings,
)
from tests.conftest import services_mod
from tests.monitor.helpers import REPO

BRIDGE_KEY = "k1"
Row = tuple[str, str, str, dt.datetime]  # OBX-3, OBX-5, OBX-6, OBX-14


def dtm(moment: dt.datetime) -> str:
    """HL7 DTM with the moment's own offset (naive: none)."""
    text = moment.strftime("%Y%m%d%H%M%S")
    frac = f"{moment.microsecond:06d}"[:4].rstrip("0")  # HL7: at most 4 digits
    if frac:  # (under 100 µs: none, not a bare ".")
        text += "." + frac
    if moment.tzinfo is not None:
        text += moment.strftime("%z")
    return text


def oru(control_id: str, location: str, rows: Sequence[Row], *, patient: str = "",
        sent: dt.datetime | None = None, charset: str = "") -> bytes:
    """An ORU^R01 as a bedside monitor's gateway sends it (segments end in CR)."""
    sent = sent or dt.datetime.now(dt.UTC)
    segs = [f"MSH|^~\\&|MONITOR|ICU|WARDWATCH|GW|{dtm(sent)}||ORU^R01^ORU_R01|{control_id}|P|"
            f"2.5.1|||NE|AL||{charset}",
            f"PID|1||{patient}^^^HOSP^MR||Doe^Jane" if patient else "PID|1",
            f"PV1|1|I|{location}",
            f"OBR|1|||93104-2^Vital signs^LN|||{dtm(sent)}"]
    for i, (code, value, unit, when) in enumerate(rows, 1):
        segs.append(f"OBX|{i}|NM|{code}||{value}|{unit}|||||F|||{dtm(when)}")
    return "\r".join(segs).encode("latin-1" if charset == "8859/1" else "utf-8") + b"\r"


@dataclass
class Ack:
    text: str

    @property
    def msa(self) -> list[str]:
        line = next(s for s in self.text.split("\r") if s.startswith("MSA|"))
        return [*line.split("|"), "", ""][:4]


class MllpClient:
    """A device's end of an MLLP connection, on a plain TCP socket."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def __aenter__(self) -> MllpClient:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_ack(self, within: float = 10.0) -> Ack:
        block = await asyncio.wait_for(self.reader.readuntil(b"\x1c\x0d"), within)
        assert block.startswith(b"\x0b"), block[:40]
        return Ack(block[1:-2].decode("utf-8", errors="replace"))

    async def send(self, message: bytes, within: float = 10.0) -> Ack:
        await self.write(b"\x0b" + message + b"\x1c\x0d")
        return await self.read_ack(within)


def spawn_bridge(url: str, port: int, folder: Path, *, client_id: str,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``wardwatch bridge`` in its own process; its log in ``folder/bridge.log``."""
    with open(folder / "bridge.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "bridge", "--listen", f"127.0.0.1:{port}",
             "--broker", url, "--store", str(folder / "store"), "--metrics-port", "0"],
            cwd=REPO, env={**os.environ, "WARDWATCH_BRIDGE_CLIENT_ID": client_id, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=log)


async def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` (a bridge started)."""
    try:
        _, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    w.close()
    return True


def write_key(folder: Path) -> Path:
    path = folder / "pseudonym.keys"
    path.write_text(f"# test key\n{BRIDGE_KEY} {secrets.token_hex(32)}\n")
    return path


def bridge_settings(url: str, store: Path, *, key_file: str = "", **bridge: Any) -> Settings:
    name = f"bridge-{uuid.uuid4().hex[:8]}"
    return Settings(
        mqtt=MqttSettings(url=url, client_id=name),
        store=StoreSettings(dir=str(store)),
        pseudonym=PseudonymSettings(key_file=key_file),
        bridge=BridgeSettings(**{"listen": "127.0.0.1:0", "client_id": name,
                                 "metrics_port": services_mod.free_port(), **bridge}),
    )


class RunningBridge:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    @property
    def port(self) -> int:
        return self.bridge.port

    def metrics_text(self) -> str:
        b = self.bridge.settings.bridge
        return httpx.get(f"http://{b.metrics_host}:{b.metrics_port}/metrics").text

    async def wait_for(self, probe: Callable[[], bool], what: str, within: float = 60) -> None:
        end = time.monotonic() + within
        while not probe():
            if time.monotonic() > end:
                raise AssertionError(f"gave up waiting for {what}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_bridge(settings: Settings) -> AsyncIterator[RunningBridge]:
    bridge = Bridge(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    waiter = asyncio.create_task(bridge.listening.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped it
    try:
        yield RunningBridge(bridge)
    finally:
        stop.set()
        await task
        # the beds' retained presence would raise device.offline in every later test's
        # daemon on this broker: clear it
        await clear_presence(settings.mqtt.url, bridge.presence.beds)


async def clear_presence(url: str, beds: Iterable[tuple[str, str]]) -> None:
    """Remove retained presence messages (an empty retained payload clears one)."""
    beds = list(beds)
    if not beds or "@" in url:
        return
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as client:
        for ward, bed in beds:
            await client.publish(f"wardwatch/v1/status/{ward}/{bed}", b"", qos=1, retain=True)


class Subscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def next(self, within: float = 10.0) -> tuple[str, Any]:
        return await asyncio.wait_for(self.queue.get(), within)


@contextlib.asynccontextmanager
async def subscriber(url: str, topic: str, *, session: str = "",
                     raw: bool = False) -> AsyncIterator[Subscription]:
    """Messages on ``topic`` as (topic, decoded JSON); ``session``: a persistent one."""
    host, port = url.removeprefix("mqtt://").split(":")
    sub = Subscription()
    client = aiomqtt.Client(host, int(port), identifier=session or None,
                            clean_session=False if session else None)
    async with client:
        await client.subscribe(topic, qos=1)

        async def pump() -> None:
            async for m in client.messages:
                body = bytes(m.payload) if raw else orjson.loads(bytes(m.payload))  # type: ignore[arg-type]
                await sub.queue.put((str(m.topic), body))

        task = asyncio.create_task(pump())
        try:
            yield sub
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
