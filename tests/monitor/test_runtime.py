"""What ``wardwatch run`` loads: a gateway should not carry the evaluation stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2:])))
"""


def test_the_daemon_does_not_import_the_evaluation_stack(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path), *NOT_AT_RUNTIME],
                         cwd=REPO, capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split() == []
