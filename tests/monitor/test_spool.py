"""The spool keeps undeliverable batches on disk, in order, and delivers them later."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.errors import SinkError
from monitor.metrics import Metrics
from monitor.spool import PermanentSinkError, Record, Spool, SpooledWriter
from tests.monitor.helpers import eventually


class FlakySink:
    """A sink that is down until ``up`` is set; refuses records equal to 'poison' for good."""

    def __init__(self) -> None:
        self.name = "flaky"
        self.up = False
        self.got: list[Record] = []
        self.closed = False

    async def write(self, records: Sequence[Record]) -> None:
        if not self.up:
            raise SinkError("down")
        if "poison" in records:
            raise PermanentSinkError("bad batch")
        self.got.extend(records)

    async def close(self) -> None:
        self.closed = True


async def test_outage_spools_in_order_and_drains_after(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reg = CollectorRegistry()
    metrics = Metrics(reg)
    sink = FlakySink()
    spool = Spool(tmp_path / "spool.db")
    w = SpooledWriter(sink, spool, metrics, batch_size=3, flush_interval_s=0.01,
                      max_backoff_s=0.05)
    task = asyncio.create_task(w.run())
    for i in range(10):
        await w.put([i])
    await eventually(lambda: spool.depth("flaky") == 10, "ten spooled records")
    assert sink.got == []
    assert reg.get_sample_value("wardwatch_spool_depth", {"sink": "flaky"}) == 10
    sink.up = True
    await eventually(lambda: len(sink.got) == 10, "the spool to drain")
    await w.put([10])  # spool empty again: delivered directly
    await eventually(lambda: len(sink.got) == 11, "the last record")
    assert sink.got == list(range(11))
    assert spool.depth("flaky") == 0
    await w.close()
    await task
    assert sink.closed
    assert reg.get_sample_value("wardwatch_sink_delivered_total", {"sink": "flaky"}) == 11
    assert reg.get_sample_value("wardwatch_sink_spooled_records_total", {"sink": "flaky"}) == 10
    # retried every 0.05 s while down, but said once (then at most once a minute), and
    # its return said too
    said = [r.message for r in caplog.records]
    assert sum(m.startswith("flaky unavailable (down)") for m in said) == 1
    assert sum(m.startswith("flaky available again after") for m in said) == 1


async def test_shutdown_while_down_keeps_everything_on_disk(tmp_path: Path) -> None:
    sink = FlakySink()
    w = SpooledWriter(sink, Spool(tmp_path / "s.db"), Metrics(CollectorRegistry()),
                      flush_interval_s=0.01)
    task = asyncio.create_task(w.run())
    await w.put(["a", "b"])
    await w.put(["c"])
    await w.close()
    await task
    again = Spool(tmp_path / "s.db")  # a restart finds them
    assert again.depth("flaky") == 3
    head = again.peek_many("flaky", 10)
    assert head is not None and head[1] == ["a", "b", "c"]


async def test_permanently_refused_batch_is_kept_apart_not_retried(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    sink = FlakySink()
    sink.up = True
    spool = Spool(tmp_path / "s.db")
    w = SpooledWriter(sink, spool, Metrics(reg), flush_interval_s=0.01)
    task = asyncio.create_task(w.run())
    await w.put(["poison"])
    await asyncio.sleep(0.05)
    await w.put(["ok"])
    await w.close()
    await task
    assert sink.got == ["ok"]
    assert spool.rejected("flaky") == 1
    assert spool.depth("flaky") == 0
