"""What the cluster tests share: the loopback cluster's bucket, partition entries, and
paho clients on its nodes."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitor.cluster import Entry
from monitor.partition import decode
from tests.monitor.helpers import eventually

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "cluster"))
from cluster import Cluster
from services import free_port

PARTITIONS = 12
BEDS = [("4A", str(b)) for b in range(1, 25)]


@contextlib.asynccontextmanager
async def bucket(cluster: Cluster) -> AsyncIterator[Any]:
    """The workers' key-value bucket, once they made it."""
    import nats

    nc = await nats.connect(servers=cluster.nats_urls)
    try:
        js = nc.jetstream()
        yield await eventually(lambda: _bucket(js), "the workers' key-value bucket", 120)
    finally:
        await nc.close()


async def _bucket(js: Any) -> Any:
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import BucketNotFoundError

    try:
        return await js.key_value("wardwatch")
    except (BucketNotFoundError, NatsTimeout, NoRespondersError):
        return None  # not made yet, or JetStream not answering yet (a leader being elected)


async def entries(kv: Any) -> dict[int, Entry]:
    """The partitions' entries that could be read now."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import KeyNotFoundError

    out = {}
    for p in range(PARTITIONS):
        try:
            got = await kv.get(f"p{p}")
        except (KeyNotFoundError, NatsTimeout):  # none yet; a leader being elected
            continue
        out[p] = msgspec.msgpack.decode(got.value, type=Entry)
    return out


class Client:
    """A paho client on one node: devices publishing at QoS 1, or a station listening."""

    def __init__(self, url: str, client_id: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(200)
        ready = threading.Event()
        self.client.on_connect = lambda *_: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(30)
        self.infos: list[paho.MQTTMessageInfo] = []
        self.events: list[dict[str, Any]] = []

    def round(self, k: int, t: float, hr: dict[tuple[str, str], np.ndarray]) -> None:
        for ward, bed in BEDS:
            self.infos.append(self.client.publish(f"wardwatch/v1/obs/{ward}/{bed}",
                                                  payload(t, hr[(ward, bed)][k]), qos=1))

    def ack(self, event: dict[str, Any]) -> None:
        body = {"id": event["id"], "by": "nurse.test", "action": "ack"}
        self.infos.append(self.client.publish(
            f"wardwatch/v1/ack/{event['ward']}/{event['bed']}", orjson.dumps(body), qos=1))

    def listen(self, topic: str) -> None:
        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            self.events.append(orjson.loads(msg.payload))
        self.client.on_message = on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(30)

    def close(self) -> None:
        for info in self.infos:
            info.wait_for_publish(60)
        self.client.disconnect()
        self.client.loop_stop()


def payload(t: float, v: float) -> bytes:
    return orjson.dumps({"obs": [{"metric": "hr", "t": t, "v": float(v), "unit": "/min"}]})



def committed(entries: dict[int, Entry]) -> dict[tuple[str, str], tuple[int, float, bytes]]:
    """Each stream's (partition, last sample time, state) as the cluster committed it."""
    out = {}
    for p, e in entries.items():
        if e.state is None:
            continue
        for ward, bed, _metric, t, state in decode(e.state)["streams"]:
            out[(str(ward), str(bed))] = (p, float(t), bytes(state))
    return out


__all__ = ["BEDS", "PARTITIONS", "Client", "Cluster", "bucket", "committed", "entries",
           "free_port", "payload"]
