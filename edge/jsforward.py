"""The bridge's forwarder to a wardwatch cluster's JetStream (``[bridge] nats``).

NATS 2.9's MQTT listener acknowledges a QoS 1 publish before the intake stream has
stored it, so what devices publish while the stream's leader is lost is acknowledged and
never stored (README "A cluster"). Publishing through JetStream instead, the bridge gets
the stream's own acknowledgement, sent once the message is stored on a quorum of the
nodes, and only then deletes it from its spool. A publish that gets no acknowledgement
(no leader yet, a node lost, a timeout) is sent again, with the same ``Nats-Msg-Id``, so
that one stored before its acknowledgement was lost is not stored twice (the stream's
duplicate window, 2 min by default).

The subject is the topic with ``.`` for ``/`` (``wardwatch.v1.obs.4A.12``): the nodes'
mapping puts the bed's partition in front of it, as it does for MQTT.

Order: messages go out ``window`` at a time, in spool order, and the next window only
after each of them is acknowledged or has failed; failed ones are sent again, in order,
before anything newer. A bed's samples can then only come out of order if one is lost
in a leader change while a later one of the same window reaches the new leader; the
daemon counts such a sample as out of order (``wardwatch_rejected_total``), it does not
apply it silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable
from typing import Any

from edge.spool import Spool
from monitor.mqtt import broker_urls
from monitor.streamintake import log_nats_error

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 2.0  # no acknowledgement within this: sent again
RETRY_S = 0.5  # after a window with failures, before sending again


def subject(topic: str) -> str:
    """The NATS subject of an MQTT topic (as NATS's MQTT listener maps it)."""
    return topic.replace("/", ".")


class JetStreamForwarder:
    """Drains the spool into JetStream, deleting what the stream acknowledged."""

    def __init__(self, urls: str, spool: Spool, *, window: int, name: str,
                 published: Any, connected: Callable[[bool], None],
                 wake: asyncio.Event, gauges: Callable[[], None]) -> None:
        self.urls = broker_urls(urls)
        self.spool = spool
        self.window = window
        self.name = name
        self.published = published  # a Counter
        self.connected = connected
        self.wake = wake
        self.gauges = gauges  # the spool's depth and age to /metrics

    def _msg_id(self, seq: int, payload: bytes) -> str:
        # the spool's sequence is never reused (AUTOINCREMENT); the checksum guards
        # against a spool file made anew within the duplicate window
        return f"{self.name}:{seq}:{zlib.crc32(payload):08x}"

    async def run(self) -> None:
        import nats

        nc = await nats.connect(
            servers=self.urls, name=self.name, max_reconnect_attempts=-1,
            disconnected_cb=self._down, reconnected_cb=self._up, error_cb=log_nats_error)
        log.info("bridge forwarding to JetStream at %s", ", ".join(self.urls))
        self.connected(True)
        try:
            js = nc.jetstream()
            failing = False
            while True:
                self.gauges()
                batch = self.spool.after(0, self.window)
                if not batch:
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), 1.0)
                    continue
                got = await asyncio.gather(*(
                    js.publish(subject(topic), payload, timeout=PUBLISH_TIMEOUT_S,
                               headers={"Nats-Msg-Id": self._msg_id(seq, payload)})
                    for seq, topic, payload in batch), return_exceptions=True)
                done: list[int] = []
                errors: list[BaseException] = []
                for (seq, _, _), r in zip(batch, got, strict=True):
                    if isinstance(r, asyncio.CancelledError):
                        raise r
                    if isinstance(r, BaseException):
                        errors.append(r)
                    else:
                        done.append(seq)
                self.spool.delete(done)
                self.published.inc(len(done))
                if errors:
                    if not failing:
                        log.warning("JetStream did not acknowledge %d of %d messages (%s); "
                                    "sending them again", len(errors), len(batch),
                                    errors[0] or type(errors[0]).__name__)
                    failing = True
                    self.connected(False)
                    await asyncio.sleep(RETRY_S)
                else:
                    if failing:
                        log.info("JetStream acknowledges again")
                    failing = False
                    self.connected(True)
        finally:
            await nc.close()

    async def _down(self) -> None:
        self.connected(False)

    async def _up(self) -> None:
        self.wake.set()


__all__ = ["JetStreamForwarder", "subject"]
