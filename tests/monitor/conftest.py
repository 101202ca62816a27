"""Fixtures of the monitor's tests."""

from __future__ import annotations

import builtins
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.scoring.multivariate import Background


@pytest.fixture
def gated_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 ) -> Iterator[tuple[Background, threading.Event]]:
    """A background import that ends only when the test opens the gate (river's import,
    held up as long as the test needs)."""
    gate = threading.Event()
    name = f"ww_gated_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "import builtins\nassert builtins.__ww_gate__.wait(30)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(builtins, "__ww_gate__", gate, raising=False)
    yield Background(name), gate
    gate.set()


@pytest.fixture(scope="session")
def compiled_kernels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the live kernels compiled ahead, built afresh (~20 s) for the
    session, as ``./dev setup`` and ``deploy/install.sh`` build them."""
    from monitor.scoring.aot import build

    where = tmp_path_factory.mktemp("aot")
    (where / "_ww_kernels_0000.cpython-311-x86_64-linux-gnu.so").write_bytes(b"an old build")
    build(where)
    return where
