"""deploy/install.sh into a staging root, as an installer would run it on a gateway.

One install (about a minute: the venv and the kernels' compilation), then: the files are
where the units expect them, the venv carries the runtime only, the kernels load compiled
ahead (no numba imported) and, asked for, from Numba's precompiled cache without
compiling, and the installed daemon and bridge start and tell systemd they are ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, services_mod
from tests.monitor.helpers import NotifySocket

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("gateway")
    proc = subprocess.run([str(REPO / "deploy" / "install.sh"), "--root", str(root)],
                          capture_output=True, text=True, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    yield root


def _pythons(folder: Path, good: tuple[str, ...]) -> dict[str, str]:
    """A PATH where ``python3`` and the other names fail the version check, as Ubuntu
    22.04's 3.10 does, except ``good`` (this interpreter under those names)."""
    folder.mkdir()
    for name in ("python3", "python3.13", "python3.12", "python3.11"):
        if name in good:
            (folder / name).symlink_to(sys.executable)
        else:
            (folder / name).write_text("#!/bin/sh\nexit 1\n")  # "3.10": not >= 3.11
            (folder / name).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:/usr/bin:/bin"}


@pytest.mark.parametrize(("good", "says"), [
    (("python3.11",), "/python3.11"),  # JetPack 6: python3 is 3.10, python3.11 beside it
    ((), "apt: python3.11 python3.11-venv"),  # nothing yet: it would install it
    (("python3",), "/python3")])  # Debian 12
def test_the_installer_picks_a_python_beside_the_system_one(tmp_path: Path, good: tuple[str, ...],
                                                            says: str) -> None:
    env = _pythons(tmp_path / "bin", good)
    out = subprocess.run([str(REPO / "deploy" / "install.sh"), "--print-python"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.endswith(says) or out.startswith(says), out
    bad = subprocess.run([str(REPO / "deploy" / "install.sh"), "--print-python", "--python",
                          str(tmp_path / "bin" / "python3.12")], env=env, capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 1 and "not a Python >= 3.11" in bad.stderr


def _venv(root: Path, name: str) -> str:
    return str(root / "opt" / "wardwatch" / ".venv" / "bin" / name)


def test_the_files_land_where_the_units_expect_them(staged: Path) -> None:
    for path in ("etc/wardwatch/wardwatch.toml", "etc/systemd/system/wardwatch.service",
                 "etc/systemd/system/wardwatch-bridge.service", "var/lib/wardwatch/bridge",
                 "opt/wardwatch/.venv/bin/wardwatch"):
        assert (staged / path).exists(), path
    unit = (staged / "etc/systemd/system/wardwatch.service").read_text()
    assert "ExecStart=/opt/wardwatch/.venv/bin/wardwatch run" in unit
    assert "NUMBA_CACHE_DIR=/var/cache/wardwatch/numba" in unit
    assert list((staged / "var/cache/wardwatch/numba").rglob("*.nbc"))


def test_the_gateway_venv_carries_the_runtime_only(staged: Path) -> None:
    probe = ("import importlib.util as u; print(' '.join(m for m in ('pandas', 'statsmodels', "
             "'matplotlib', 'wfdb', 'amqtt', 'pyarrow', 'hl7', 'numba', 'river', 'paho') "
             "if u.find_spec(m)))")
    out = subprocess.run([_venv(staged, "python"), "-c", probe], capture_output=True,
                         text=True, check=True, cwd="/").stdout.split()
    assert out == ["hl7", "numba", "river", "paho"]
    score = subprocess.run([_venv(staged, "wardwatch"), "score", "--metric", "hr", "--input",
                            "/dev/null", "--output", "/dev/null"], capture_output=True,
                           text=True, check=False, cwd="/")
    assert score.returncode == 2
    assert "pip install 'wardwatch[replay]'" in score.stderr, score.stderr


def test_the_kernels_load_from_the_install_time_cache(staged: Path) -> None:
    cache = staged / "var/cache/wardwatch/numba"
    # compiled ahead: what the daemon runs, numba not even imported
    probe = ("import sys; from monitor.scoring import Scorer; s = Scorer(); s.warm_up(); "
             "print(s.kernels.source); print('numba' in sys.modules)")
    out = subprocess.run([_venv(staged, "python"), "-c", probe], capture_output=True,
                         text=True, check=True, cwd="/",
                         env={**os.environ, "NUMBA_CACHE_DIR": str(cache)}).stdout.split("\n")
    assert out[0].startswith(f"compiled ahead ({cache}/_ww_kernels_"), out
    assert out[1] == "False"
    # and Numba's JIT, the fallback, from its cache without compiling
    proc = subprocess.run(
        [_venv(staged, "python"), "-c", "from monitor.scoring import Scorer; Scorer().warm_up()"],
        capture_output=True, text=True, check=True, cwd="/",
        env={**os.environ, "NUMBA_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1",
             "WARDWATCH_KERNELS": "jit"})
    log = proc.stdout + proc.stderr
    assert "data loaded" in log and "score_batch" in log, log[-2000:]
    assert "data saved" not in log, log[-2000:]  # nothing had to be compiled


@pytest.mark.parametrize("command", ["run", "bridge"])
def test_the_installed_daemon_and_bridge_start_and_say_ready(
        staged: Path, services: Any, tmp_path: Path, command: str) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    args = {"run": ["--metrics-port", "0", "--http-port", str(services_mod.free_port())],
            "bridge": ["--listen", f"127.0.0.1:{services_mod.free_port()}",
                       "--metrics-port", "0"]}[command]
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path),
           "NUMBA_CACHE_DIR": str(staged / "var/cache/wardwatch/numba"),
           "WARDWATCH_MQTT_CLIENT_ID": f"installed-{command}",
           "WARDWATCH_BRIDGE_CLIENT_ID": f"installed-{command}"}
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen(
            [_venv(staged, "wardwatch"), command, "--broker", services.started["mosquitto"].url,
             "--store", str(tmp_path / "store"), *args], cwd="/", env=env,
            stdout=subprocess.DEVNULL, stderr=log)
    try:
        notify.until("READY=1", 60, proc, tmp_path / "log")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
