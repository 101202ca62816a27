"""The live kernels compiled ahead (``monitor.scoring.aot``): the same bits as Numba's JIT,
arguments checked, found only for these sources (``wardwatch run`` without numba:
``test_runtime.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.scoring import Scorer, StreamTable, _live_kernels, aot, jit_kernels
from monitor.vitals import METRIC_IDS


def _stream(kernels: aot.Kernels, seed: int) -> tuple[list[np.ndarray], dict[str, object]]:
    """Batches of samples from 60 streams of every metric, with artifacts, gaps, repeats
    and samples out of order, through a Scorer on ``kernels``: outputs and end state."""
    scorer = Scorer(StreamTable(capacity=8), kernels=kernels)  # grows on the way
    rng = np.random.default_rng(seed)
    metrics = sorted(set(METRIC_IDS.values()))
    keys = [(f"W{i % 3}", str(i), metrics[i % len(metrics)]) for i in range(60)]
    sids = np.array([scorer.streams.index(*k) for k in keys])
    level = rng.uniform(40, 160, len(keys))
    outs: list[np.ndarray] = []
    t = 1.8e9
    for _ in range(300):
        n = int(rng.integers(1, 400))
        pick = rng.integers(0, len(keys), n)
        ts = t + rng.uniform(-5, 10, n)  # some before the stream's newest
        ts[rng.random(n) < 0.02] = np.nan
        v = level[pick] + rng.normal(0, 3, n) + 200 * (rng.random(n) < 0.01)
        v[rng.random(n) < 0.01] = np.inf
        level += rng.normal(0, 0.5, len(keys))
        t += float(rng.choice([5.0, 5.0, 5.0, 400.0]))  # now and then a gap
        b = scorer.score(sids[pick], np.array([keys[i][2] for i in pick]), ts, v, t)
        outs += [b.out, b.band, b.status, b.sid, b.t]
    return outs, scorer.streams.checkpoint()


def test_compiled_ahead_kernels_give_the_jit_s_bits(compiled_kernels: Path) -> None:
    compiled = aot.load(compiled_kernels)
    assert compiled is not None and "compiled ahead" in compiled.source
    assert not list(compiled_kernels.glob("_ww_kernels_0000*"))  # an older build, removed
    for seed in (1, 2):
        got, got_state = _stream(compiled, seed)
        want, want_state = _stream(jit_kernels(), seed)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and np.array_equal(g, w, equal_nan=True)
        for name, w in want_state.items():
            g = got_state[name]
            assert (g == w) if name == "keys" else np.array_equal(g, w, equal_nan=True), name


def test_compiled_ahead_kernels_let_go_of_the_gil(compiled_kernels: Path) -> None:
    # as the JIT's (nogil=True): their wrappers save the thread state around the call,
    # the only reason the extension would import PyEval_SaveThread (its helper C has none)
    binary = aot.path(compiled_kernels).read_bytes()
    assert b"PyEval_SaveThread" in binary and b"PyEval_RestoreThread" in binary


def test_compiled_ahead_kernels_refuse_what_they_would_misread(compiled_kernels: Path) -> None:
    compiled = aot.load(compiled_kernels)
    assert compiled is not None
    sid, t = np.arange(6, dtype=np.int64), np.arange(6, dtype=np.float64)
    assert compiled.in_order(sid, t) and not compiled.in_order(sid[::-1].copy(), t)
    ro = sid.copy()
    ro.flags.writeable = False
    assert compiled.in_order(ro, t)  # read only: fine, it writes nothing
    for bad in (sid[::2], sid.astype(np.float64), sid.astype(np.int32), sid.reshape(2, 3)):
        with pytest.raises(TypeError, match="in_order: argument 0"):
            compiled.in_order(bad, t[:bad.shape[0]])
    scorer = Scorer(StreamTable(capacity=8), kernels=compiled)
    scorer.warm_up()
    scorer.streams.fs = np.asfortranarray(scorer.streams.fs)  # state the kernel writes
    with pytest.raises(TypeError, match="score_batch: argument 5 must be a C-contiguous"):
        scorer.score(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64),
                     np.ones(1), np.ones(1), 0.0)


def test_only_a_build_for_these_sources_is_loaded_and_a_broken_one_falls_back_to_the_jit(
        tmp_path: Path, compiled_kernels: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    built = aot.path(compiled_kernels)
    assert aot.load(tmp_path) is None  # none built here
    # what other sources (another digest) built: not this one's name, not loaded
    other = tmp_path / built.name.replace(aot.module_name(), aot.module_name()[:-4] + "beef")
    other.write_bytes(built.read_bytes())
    assert aot.load(tmp_path) is None
    # a file of the right name that is no extension: the live path says so, runs the JIT
    aot.path(tmp_path).write_bytes(b"not an ELF file")
    with pytest.raises(ImportError):
        aot.load(tmp_path)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("WARDWATCH_KERNELS", raising=False)
    assert _live_kernels().source == "Numba JIT"
    assert "compiled-ahead kernels not loaded" in caplog.text
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(compiled_kernels))
    assert _live_kernels().source == f"compiled ahead ({built})"
