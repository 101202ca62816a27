"""Model checkpoints: a restored stream scores exactly as one that was never interrupted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.checkpoint import ModelStore, snapshot
from monitor.scoring import Scorer, StreamTable
from monitor.scoring import _layout as L
from monitor.vitals import METRIC_IDS
from tests.conftest import RunningDaemon, daemon_settings
from tests.monitor.helpers import eventually, publish


def _streams(seed: int) -> list[tuple[str, str, int, np.ndarray, np.ndarray]]:
    """HR at 5 s with a tachycardic stretch, glucose at 5 min falling, a cuff's SBP."""
    rng = np.random.default_rng(seed)
    t0 = 1_796_000_000.0
    hr_t = t0 + 5.0 * np.arange(1500)
    hr = 80 + 4 * rng.standard_normal(1500) + np.where((hr_t - t0) > 4000, 40, 0)
    g_t = t0 + 300.0 * np.arange(400)
    g = 140 + 30 * np.sin(np.arange(400) / 40) - 0.2 * np.arange(400) + rng.standard_normal(400)
    s_t = t0 + 900.0 * np.arange(120) + rng.uniform(0, 60, 120)
    s = 120 + 10 * rng.standard_normal(120)
    return [("4A", "1", METRIC_IDS["hr"], hr_t, hr), ("4A", "1", METRIC_IDS["glucose"], g_t, g),
            ("4A", "2", METRIC_IDS["sbp"], s_t, s)]


def _batches(scorer: Scorer, streams: list[Any], lo: float, hi: float) -> list[np.ndarray]:
    """Score every sample with lo <= t < hi in batches of ~10 minutes; the outputs."""
    outs = []
    for start in np.arange(lo, hi, 600.0):
        sid, met, tt, vv = [], [], [], []
        for ward, bed, metric, t, v in streams:
            m = (t >= start) & (t < min(start + 600.0, hi))
            s = scorer.streams.index(ward, bed, metric)
            sid += [s] * int(m.sum())
            met += [metric] * int(m.sum())
            tt += list(t[m])
            vv += list(v[m])
        if sid:
            b = scorer.score(np.array(sid), np.array(met), np.array(tt), np.array(vv),
                             float(max(tt)))
            outs.append(np.column_stack([b.t, b.out, b.band, b.status]))
    return outs


@pytest.mark.parametrize("seed", [3, 17])
def test_a_restored_stream_scores_exactly_as_an_uninterrupted_one(tmp_path: Path,
                                                                   seed: int) -> None:
    streams = _streams(seed)
    start = min(float(t[0]) for *_, t, _v in streams)
    cut, end = start + 30 * 3600.0, start + 110 * 3600.0
    whole = Scorer()
    _batches(whole, streams, start, cut)
    expected = _batches(whole, streams, cut, end)

    first = Scorer()
    _batches(first, streams, start, cut)
    store = ModelStore(tmp_path / "models.db")
    store.write(snapshot(first.streams, range(len(first.streams))))
    store.close()
    table = StreamTable()
    assert ModelStore(tmp_path / "models.db").restore(table) == 3
    got = _batches(Scorer(table), streams, cut, end)
    assert len(got) == len(expected) > 10
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)  # NaN where NaN, every bit of the rest
    # and the forecasts were there from the first sample after the restart
    assert np.isfinite(got[0][:, 1 + L.O_FC]).any()


def test_a_checkpoint_of_another_layout_is_not_read(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models.db")
    scorer = Scorer()
    _batches(scorer, _streams(1), 1_796_000_000.0, 1_796_003_600.0)
    store.write(snapshot(scorer.streams, range(len(scorer.streams))))
    store._db.execute("UPDATE meta SET value = 'old' WHERE key = 'layout'")
    store._db.commit()
    store.close()
    table = StreamTable()
    assert ModelStore(tmp_path / "models.db").restore(table) == 0  # re-learn, never misread


@pytest.mark.integration
async def test_a_restarted_daemon_goes_on_from_its_models(services: Any, tmp_path: Path) -> None:
    rd = RunningDaemon(daemon_settings(services, tmp_path))
    daemon = await rd.start()
    url = services.started["mosquitto"].url
    t0 = time.time() - 3600
    obs = [{"metric": "hr", "t": t0 + 10 * k, "v": 80 + (k % 7), "unit": "/min"}
           for k in range(300)]
    await publish(url, "wardwatch/v1/obs/5K/3", {"obs": obs})
    hr = METRIC_IDS["hr"]
    def last_t() -> float:
        s = daemon.processor.streams.find("5K", "3", hr)
        return -1.0 if s is None else float(daemon.processor.streams.fs[s, L.F_LAST_T])

    await eventually(lambda: last_t() >= obs[-1]["t"] or None, "the last sample scored")
    s = daemon.processor.streams.find("5K", "3", hr)
    assert s is not None
    before = daemon.processor.streams.row_state(s)
    await rd.stop()  # a clean stop writes every stream
    daemon = await rd.start()
    try:
        s2 = daemon.processor.streams.find("5K", "3", hr)
        assert s2 is not None and daemon.processor.streams.row_state(s2) == before
    finally:
        await rd.stop()
