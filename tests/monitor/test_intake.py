"""The paho intake's acknowledgements: never one for a connection that is gone."""

from __future__ import annotations

import asyncio

import paho.mqtt.client as paho
from prometheus_client import CollectorRegistry

from monitor.intake import Intake, RawMessage, Token
from monitor.metrics import Metrics


def _intake() -> Intake:
    queue: asyncio.Queue[RawMessage | None] = asyncio.Queue()
    return Intake("mqtt://127.0.0.1:1", client_id="intake-test", subscriptions=["x/#"],
                  queue=queue, clock=lambda: 0.0, metrics=Metrics(CollectorRegistry()))


def _queued_acks(intake: Intake) -> list[int]:
    return [p["mid"] for p in intake._client._out_packet
            if p["command"] & 0xF0 == paho.PUBACK]


def test_acks_of_a_lost_connection_are_not_written_on_the_next() -> None:
    intake = _intake()  # never connected: paho queues what it is asked to send
    before = Token(7, 1, intake._generation)
    intake.ack([before, Token(8, 0, intake._generation)])  # QoS 0 has nothing to ack
    assert _queued_acks(intake) == [7]
    intake._client._out_packet.clear()

    # the connection is lost; paho reconnects by itself, the processor still holds tokens
    intake._on_disconnect(intake._client, None, None, paho.MQTTErrorCode.MQTT_ERR_CONN_LOST)
    intake.ack([before, Token(9, 1, before.generation)])
    assert _queued_acks(intake) == []  # void: the broker sends those messages again
    after = Token(7, 1, intake._generation)  # the same packet id, delivered again
    intake.ack([after])
    assert _queued_acks(intake) == [7]
