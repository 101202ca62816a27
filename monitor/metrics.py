"""Prometheus metrics of the pipeline. No patient identifier is ever a label value.

Counters are updated by the stages; live values (queue depths, spool depths, active
alarms, last-seen age per bed, ingest lag) are read at scrape time by
:class:`PipelineCollector`, so the hot path pays nothing for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.errors import ConfigError
from monitor.wire import REASONS

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class BulkHistogram:
    """A histogram that takes a whole numpy array per call (the stages work in batches)."""

    def __init__(self, buckets: tuple[float, ...] = LAG_BUCKETS) -> None:
        self.bounds = np.array(buckets)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # last: +Inf only
        self.total = 0.0

    def observe_many(self, values: npt.NDArray[np.float64]) -> None:
        if values.size == 0:
            return
        idx = np.searchsorted(self.bounds, values, side="left")
        self.counts += np.bincount(idx, minlength=self.counts.shape[0])
        self.total += float(values.sum())

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        cum = np.cumsum(self.counts)
        buckets = [(repr(float(b)), float(c)) for b, c in zip(self.bounds, cum[:-1], strict=True)]
        buckets.append(("+Inf", float(cum[-1])))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.total)


@dataclass
class LiveViews:
    """Callables the collector reads at scrape time; each stage registers its own."""

    queues: dict[str, Callable[[], int]] = field(default_factory=dict)
    spools: dict[str, Callable[[], int]] = field(default_factory=dict)
    stuck: dict[str, Callable[[], float]] = field(default_factory=dict)
    active_alarms: Callable[[], Mapping[tuple[str, str], int]] = dict
    bed_last_seen: Callable[[], Iterable[tuple[str, str, float]]] = tuple
    clock: Callable[[], float] = time.time  # the clock last-seen times are read on
    clock_step: Callable[[], float] | None = None  # system clock minus ours (daemon only)


class PipelineCollector(Collector):
    """Reads live values at scrape time."""

    def __init__(self, views: LiveViews, lag: BulkHistogram) -> None:
        self.views = views
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        q = GaugeMetricFamily(
            "wardwatch_queue_depth", "Items waiting between pipeline stages", labels=["stage"]
        )
        for name, depth in self.views.queues.items():
            q.add_metric([name], depth())
        yield q
        sp = GaugeMetricFamily(
            "wardwatch_spool_depth", "Batches spooled on disk, waiting for a sink", labels=["sink"]
        )
        for name, depth in self.views.spools.items():
            sp.add_metric([name], depth())
        yield sp
        stuck = GaugeMetricFamily(
            "wardwatch_sink_failing_seconds",
            "How long a sink has been failing to deliver (0: delivering)", labels=["sink"]
        )
        for name, secs in self.views.stuck.items():
            stuck.add_metric([name], secs())
        yield stuck
        act = GaugeMetricFamily(
            "wardwatch_alarms_active", "Active alarms", labels=["ward", "priority"]
        )
        for (ward, prio), n in sorted(self.views.active_alarms().items()):
            act.add_metric([ward, prio], n)
        yield act
        age = GaugeMetricFamily(
            "wardwatch_bed_last_seen_age_seconds",
            "Seconds since the newest accepted sample from a bed (steady clock)",
            labels=["ward", "bed"],
        )
        now = self.views.clock()
        for ward, bed, seen in self.views.bed_last_seen():
            age.add_metric([ward, bed], max(0.0, now - seen))
        yield age
        if self.views.clock_step is not None:
            yield GaugeMetricFamily(
                "wardwatch_clock_step_seconds",
                "How far the system clock has stepped from wardwatch's steady clock since"
                " start (timers ignore such steps)",
                value=self.views.clock_step(),
            )
        yield self.lag.family(
            "wardwatch_ingest_lag_seconds",
            "Receipt wall time minus observation time, per accepted sample",
        )


class Metrics:
    """Every metric wardwatch exports, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages = Counter(
            "wardwatch_ingest_messages",
            "MQTT messages by outcome (accepted, partial, rejected)",
            ["outcome"],
            registry=registry,
        )
        self.observations = Counter(
            "wardwatch_ingest_observations",
            "Observations by outcome (accepted, rejected, out_of_order)",
            ["outcome"],
            registry=registry,
        )
        self.rejected = Counter(
            "wardwatch_ingest_rejected",
            "Rejections by reason (a whole payload or one observation)",
            ["reason"],
            registry=registry,
        )
        self.alarm_events = Counter(
            "wardwatch_alarm_events",
            "Alarm events emitted",
            ["ward", "priority", "state"],
            registry=registry,
        )
        self.fired = Counter(
            "wardwatch_alarms_fired",
            "Alarms fired, by bed and alarm code: the alarm burden (increase over 1d per bed)",
            ["ward", "bed", "code", "priority"],
            registry=registry,
        )
        self.commands = Counter(
            "wardwatch_commands",
            "Control messages (ack, admit, status) by outcome (accepted, rejected)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.internal_errors = Counter(
            "wardwatch_internal_errors",
            "Unexpected exceptions caught by a stage (process, alarms, command, clock, ack,"
            " relay, sink:*);"
            " the daemon goes on and raises system.internal",
            ["stage"],
            registry=registry,
        )
        self.deadletters = Counter(
            "wardwatch_deadletters",
            "Dead letters: published in full, or only counted in a per-interval summary",
            ["outcome"],
            registry=registry,
        )
        self.delivered = Counter(
            "wardwatch_sink_delivered",
            "Records delivered by a sink",
            ["sink"],
            registry=registry,
        )
        self.failures = Counter(
            "wardwatch_sink_failures",
            "Failed delivery attempts by a sink (the batch is spooled, not lost)",
            ["sink"],
            registry=registry,
        )
        self.spooled = Counter(
            "wardwatch_sink_spooled_records",
            "Records written to the on-disk spool because a sink was unavailable",
            ["sink"],
            registry=registry,
        )
        self.reconnects = Counter(
            "wardwatch_mqtt_reconnects",
            "MQTT connection losses followed by a reconnect attempt",
            ["client"],
            registry=registry,
        )
        for outcome in ("accepted", "partial", "rejected"):
            self.messages.labels(outcome)
        for outcome in ("accepted", "rejected", "out_of_order"):
            self.observations.labels(outcome)
        for reason in REASONS:
            self.rejected.labels(reason)
        for stage in ("process", "alarms", "command", "clock", "ack", "relay"):
            self.internal_errors.labels(stage)
        for outcome in ("published", "summarised"):
            self.deadletters.labels(outcome)
        self.lag = BulkHistogram()
        self.views = LiveViews()
        registry.register(PipelineCollector(self.views, self.lag))


def serve(host: str, port: int, registry: CollectorRegistry) -> WSGIServer | None:
    """``/metrics`` of ``registry`` on ``host:port`` in a thread (port 0: none)."""
    if not port:
        return None
    try:
        server, _thread = start_http_server(port, host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve /metrics on {host}:{port}: {exc}") from exc
    return server


def stop_serving(server: WSGIServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
