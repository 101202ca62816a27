"""MQTT intake with acknowledgement after persisting (paho-mqtt's ``manual_ack``).

aiomqtt acknowledges a QoS 1 message as soon as it arrives, so a process that dies
loses what it had received but not yet processed (the broker considers it delivered).
Here the PUBACK for a message is sent only when the daemon says its batch is durable:
history journalled, alarm events committed to the outbox, commands applied to the
alarm store. A crash before that leaves the message unacknowledged in the broker's
persistent session, and it is delivered again after the restart: at least once.

paho runs its network loop in its own thread. Messages cross to the event loop one
slot at a time (``queue_size`` slots): when every slot is taken the network thread
waits, stops reading the socket, and the broker holds the backlog, so memory stays
bounded however fast devices publish.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho

from monitor.config import TlsFiles
from monitor.metrics import Metrics
from monitor.mqtt import RECONNECT_MAX_S, paho_client, redacted

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Token:
    """What acknowledging one message takes: its packet id, QoS and connection."""

    mid: int
    qos: int
    generation: int


RawMessage = tuple[str, bytes, float, Token]


class Intake:
    """Subscribes with a persistent session; hands messages to ``queue``; acks on request."""

    def __init__(self, url: str, *, client_id: str, subscriptions: Sequence[str],
                 queue: asyncio.Queue[RawMessage | None], clock: Callable[[], float],
                 metrics: Metrics, tls_files: TlsFiles | None = None,
                 keepalive: int = 30, slots: int = 10_000) -> None:
        self.url = redacted(url)  # for the log: never the password
        self.subscriptions = list(subscriptions)
        self.queue = queue
        self.clock = clock
        self.metrics = metrics
        self.subscribed = asyncio.Event()
        self._slots = threading.Semaphore(slots)
        self._generation = 0  # bumped on every loss and connect: older packet ids are void
        self._closing = False
        self._lost_at: float | None = None  # monotonic, while the connection is down
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client, self._host, self._port = paho_client(
            url, client_id=client_id, clean_session=False, manual_ack=True,
            **(tls_files or TlsFiles(ca_file="", cert_file="", key_file="")))
        self._keepalive = keepalive
        c = self._client
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        c.reconnect_delay_set(1, RECONNECT_MAX_S)

    # -- the event loop's side ---------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self._host, self._port, self._keepalive)
        self._client.loop_start()

    def taken(self) -> None:
        """The processor took one message off the queue: a slot is free."""
        self._slots.release()

    def ack(self, tokens: Sequence[Token]) -> None:
        """Acknowledge durable messages, in the order they arrived."""
        gen = self._generation
        for tok in tokens:
            if tok.qos and tok.generation == gen:
                self._client.ack(tok.mid, tok.qos)

    def pause(self) -> None:
        """Take no more messages: what the broker sends from now on stays unacknowledged
        and comes again next time."""
        self._closing = True
        self._slots.release()  # a network thread waiting for a slot sees the flag

    def close(self) -> None:
        """Disconnect once the acknowledgements queued so far are written."""
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # -- paho's network thread -----------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any = None,
                    ) -> None:
        if rc.is_failure:
            log.warning("MQTT ingest connection to %s refused: %s", self.url, rc)
            return
        self._generation += 1
        client.subscribe([(t, 1) for t in self.subscriptions])

    def _on_subscribe(self, *_: Any) -> None:
        lost, self._lost_at = self._lost_at, None
        if lost is None:
            log.info("subscribed to %s on %s", ", ".join(self.subscriptions), self.url)
        else:  # the counterpart of the warning: how long monitoring was blind
            log.warning("MQTT ingest back on %s after %.1f s; watching again", self.url,
                        time.monotonic() - lost)
        self._call(self.subscribed.set)

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any = None,
                       ) -> None:
        # Void the lost connection's packet ids now, not at the next CONNACK: an ack queued
        # while paho reconnects would be written ahead of CONNECT on the new socket (a
        # protocol error: the broker drops it). The broker sends those messages again.
        self._generation += 1
        self._call(self.subscribed.clear)
        if not self._closing:
            if self._lost_at is None:
                self._lost_at = time.monotonic()
            self.metrics.reconnects.labels("ingest").inc()
            log.warning("MQTT ingest connection lost (%s); reconnecting", rc)

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        while not self._slots.acquire(timeout=1.0):
            if self._closing:
                return
        if self._closing:
            self._slots.release()
            return  # not acknowledged: the broker sends it again after the restart
        tok = Token(msg.mid, msg.qos, self._generation)
        topic = msg._topic.decode("utf-8", errors="replace")  # bad bytes: bad_topic later
        item = (topic, bytes(msg.payload), self.clock(), tok)
        self._call(self.queue.put_nowait, item)
