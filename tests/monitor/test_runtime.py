"""What ``wardwatch run`` loads: a gateway should not carry the evaluation stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.scoring import aot

REPO = Path(__file__).resolve().parents[2]
# evaluation, replay, reports and the demo's broker only
NOT_AT_RUNTIME = ("statsmodels", "pandas", "matplotlib", "wfdb", "amqtt", "pyarrow")

PROBE = """
import sys
from monitor.cli import main  # noqa: F401  (the entry point, as `wardwatch run` starts)
from monitor.config import Settings, StoreSettings
from monitor.daemon import Daemon
d = Daemon(Settings(store=StoreSettings(dir=sys.argv[1])))
d.processor.scorer.warm_up()
d.processor.process([("wardwatch/v1/obs/4A/1",
                      b'{"obs": [{"metric": "hr", "t": 1763856000, "v": 80, "unit": "/min"}]}',
                      1763856001.0)])
print(d.processor.scorer.kernels.source)
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2:]))))
"""


def _probe(store: Path, *modules: str, env: dict[str, str] | None = None) -> list[str]:
    """The daemon's kernels, and which of ``modules`` it imported, as it starts and takes
    an observation."""
    return subprocess.run([sys.executable, "-c", PROBE, str(store), *modules], cwd=REPO,
                          capture_output=True, text=True, check=True, timeout=300,
                          env={**os.environ, **(env or {})}).stdout.splitlines()


def test_the_daemon_does_not_import_the_evaluation_stack(tmp_path: Path) -> None:
    assert _probe(tmp_path, *NOT_AT_RUNTIME)[1] == ""


@pytest.mark.parametrize("kernels", ["", "jit"])
def test_the_daemon_runs_without_numba_when_the_kernels_are_compiled_ahead(
        tmp_path: Path, compiled_kernels: Path, kernels: str) -> None:
    out = _probe(tmp_path, "numba", "llvmlite", "scipy",
                 env={"NUMBA_CACHE_DIR": str(compiled_kernels), "WARDWATCH_KERNELS": kernels})
    if kernels == "jit":  # asked for Numba's JIT: numba (and its scipy check) come back
        assert out == ["Numba JIT", "llvmlite numba scipy"]
    else:
        assert out == [f"compiled ahead ({aot.path(compiled_kernels)})", ""]


def test_a_gateway_install_leaves_them_out_and_a_command_that_needs_one_names_its_extra(
        tmp_path: Path) -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {d.split(">")[0].split("<")[0].split("[")[0] for d in project["dependencies"]}
    assert not runtime & set(NOT_AT_RUNTIME)
    extras = project["optional-dependencies"]
    for lib in NOT_AT_RUNTIME:  # each comes with an extra (statsmodels: tests and benchmarks)
        assert any(d.startswith(lib) for deps in extras.values() for d in deps), lib
    # on a gateway (simulated: the library shadowed by one that is "not installed")
    for lib in ("pyarrow", "amqtt"):
        stub = tmp_path / lib / lib
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{lib}'\", name={lib!r})\n")
    (tmp_path / "in.csv").write_text("timestamp,value\n1763856000,80\n")
    cases = {
        "pyarrow": (["score", "--metric", "hr", "--input", str(tmp_path / "in.csv"),
                     "--output", str(tmp_path / "out.csv")], "replay"),
        "amqtt": (["demo", "--plain", "--duration", "1", "--metrics-port", "0"], "demo"),
    }
    for lib, (argv, extra) in cases.items():
        proc = subprocess.run([sys.executable, "-m", "monitor.cli", *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=300, check=False,
                              env={**os.environ, "PYTHONPATH": str(tmp_path / lib)})
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"needs {lib}, which is not installed here: pip install 'wardwatch[{extra}]'" \
            in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
