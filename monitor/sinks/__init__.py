"""Where scored data and alarms go: MQTT, InfluxDB (v1 or v2 API), or SQLite.

History records are plain JSON-able lists so that they survive the spool:

* a vital: ``["v", ward, bed, metric, t, value, score_or_None, forecast_or_None]``
* an alarm event: ``["a", {...the alert JSON...}]``
* a bed's multivariate anomaly score: ``["b", ward, bed, t, score]``

MQTT records are ``[topic, payload_text, qos]``.
"""

from __future__ import annotations

from monitor.sinks.influx import InfluxV1Sink, InfluxV2Sink, to_line_protocol
from monitor.sinks.mqtt import MqttPublisher
from monitor.sinks.sqlite import SqliteHistorySink

__all__ = ["InfluxV1Sink", "InfluxV2Sink", "MqttPublisher", "SqliteHistorySink",
           "to_line_protocol"]
