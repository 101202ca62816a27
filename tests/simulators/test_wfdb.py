"""PhysioNet WFDB numerics records as replay input, written and read by the wfdb package."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulators.publish import MG_PER_MMOL, is_wfdb, wfdb_module, wfdb_rows

wfdb = wfdb_module()
# wfdb 4.3 calls pandas with inplace=, deprecated in pandas 3 (see simulators.publish)
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")

REPO = Path(__file__).resolve().parents[2]
BASE = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def numerics(where: Path, name: str = "n001") -> Path:
    """10 min at 1 Hz: HR (with a gap), a cuff held between two readings, SpO2, glucose."""
    n = 600
    hr = 70.0 + np.arange(n) % 5
    hr[100:110] = np.nan  # the monitor lost the signal
    nbp_sys = np.where(np.arange(n) < 300, 120.0, 112.0)  # held between measurements
    nbp_sys[:30] = np.nan  # no measurement yet
    spo2 = np.full(n, 97.0)
    glu = np.full(n, 6.5)  # mmol/L
    wfdb.wrsamp(name, fs=1.0, units=["bpm", "mmHg", "%", "mmol/L"],
                sig_name=["HR", "NBPSys", "SpO2", "Glucose"],
                p_signal=np.column_stack([hr, nbp_sys, spo2, glu]), fmt=["16"] * 4,
                adc_gain=[10.0] * 4, baseline=[0] * 4, write_dir=str(where),
                base_date=BASE.date(), base_time=BASE.time().replace(tzinfo=None))
    return where / f"{name}.hea"


def test_a_numerics_record_becomes_rows(tmp_path: Path) -> None:
    hea = numerics(tmp_path)
    assert is_wfdb(hea) and is_wfdb(hea.with_suffix("")) and not is_wfdb(tmp_path / "x.csv")
    rows, ignored = wfdb_rows(hea, ward="ICU")
    assert ignored == ["SpO2"]
    by = {m: [r for r in rows if r[2] == m] for m in ("hr", "sbp", "glucose")}
    assert len(by["hr"]) == 590  # the 10 missing samples are skipped
    assert by["hr"][0] == ("ICU", "n001", "hr", BASE.timestamp(), 70.0)
    # the cuff: two measurements, each sent once, when it was taken
    assert [(r[3] - BASE.timestamp(), r[4]) for r in by["sbp"]] == [(30.0, 120.0), (300.0, 112.0)]
    assert by["glucose"][0][4] == pytest.approx(6.5 * MG_PER_MMOL)
    assert [r[3] for r in rows] == sorted(r[3] for r in rows)


def test_a_record_without_our_vitals_is_refused_clearly(tmp_path: Path) -> None:
    wfdb.wrsamp("resp", fs=1.0, units=["%"], sig_name=["SpO2"],
                p_signal=np.full((10, 1), 97.0), fmt=["16"], adc_gain=[10.0], baseline=[0],
                write_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"no heart rate, blood .* among SpO2"):
        wfdb_rows(tmp_path / "resp.hea", ward="W")
    # no base date: fine retimed to now, refused where the recorded times are asked for
    wfdb.wrsamp("undated", fs=1.0, units=["bpm"], sig_name=["HR"],
                p_signal=np.full((10, 1), 80.0), fmt=["16"], adc_gain=[10.0], baseline=[0],
                write_dir=str(tmp_path))
    rows, _ = wfdb_rows(tmp_path / "undated.hea", ward="W")
    assert [r[3] for r in rows] == [float(i) for i in range(10)]
    with pytest.raises(ValueError, match="no base date"):
        wfdb_rows(tmp_path / "undated.hea", ward="W", dated=True)
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "replay",
                           str(tmp_path / "resp"), "--broker", "mqtt://127.0.0.1:9"],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 2 and "SpO2" in proc.stderr
