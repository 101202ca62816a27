"""Coverage-guided fuzzing of the wire decoders with atheris (libFuzzer). Not collected by pytest.

    .venv/bin/python tests/monitor/fuzz_wire.py -atheris_runs=1000000

Every input is split into a topic choice and a payload and goes through ``decode`` and
``decode_command``; an exception, or an accepted observation that breaks the wire
contract's bounds, is a crash that libFuzzer reports with the input that caused it.
A seed corpus of valid and nearly valid payloads is written to a temp directory first.
The property-based tests in test_fuzz.py run in CI; this is the long run.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import atheris
import orjson

# from the source tree through the plain path finder (an editable install's own loader
# hides the modules from atheris' instrumentation)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
with atheris.instrument_imports(enable_loader_override=False):
    from monitor import timestamps, wire  # noqa: F401  (the time parser is fuzzed too)
    from monitor.vitals import METRICS

NOW = 1_763_856_000.0
LIMITS = wire.Limits()
TOPICS = ["wardwatch/v1/obs/4A/12", "wardwatch/v1/obs/4A", "wardwatch/v1/obs/4A/1/2",
          "wardwatch/v1/ack/4A/12", "wardwatch/v1/admit/4A/12", "wardwatch/v1/status/4A/12"]
SEEDS = [
    {"obs": [{"metric": "hr", "t": NOW, "v": 80, "unit": "/min"}]},
    {"patient": "p", "obs": [{"metric": "sbp", "t": "2025-11-23T00:00:00+01:00", "v": 12.5,
                              "unit": "kPa"}, {"metric": "glucose", "t": NOW * 1000, "v": 4.2,
                                               "unit": "mmol/L"}]},
    {"metric": "map", "t": "2025-11-23T00:00:00.5Z", "v": 70, "unit": "mm[Hg]"},
    {"id": "abc", "by": "nurse", "action": "snooze", "snooze_s": 60},
    {"status": "offline"},
    {"patient": "p", "rules": {"hr.news2.3": {"threshold": 120}}},
]


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    pick = fdp.ConsumeIntInRange(0, len(TOPICS))
    topic = TOPICS[pick] if pick < len(TOPICS) else fdp.ConsumeUnicode(40)
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    d = wire.decode(topic, payload, NOW, LIMITS)
    for r in d.rejections:
        if r.reason not in wire.REASONS:
            raise AssertionError(f"unknown reason {r.reason!r}")
    for mid, t, v in zip(d.metric, d.t, d.v, strict=True):
        lo, hi = METRICS[mid].device_range
        if not (math.isfinite(v) and lo <= v <= hi):
            raise AssertionError(f"accepted value {v!r} for {METRICS[mid].name}")
        if not wire.EARLIEST_T <= t <= NOW + LIMITS.max_future_s:
            raise AssertionError(f"accepted time {t!r}")
    wire.decode_command(topic, payload)


def main() -> None:
    corpus = Path(tempfile.mkdtemp(prefix="wardwatch-fuzz-"))
    for i, seed in enumerate(SEEDS):
        for j in range(len(TOPICS)):
            # the provider takes integers from the end of the input
            (corpus / f"seed-{i}-{j}").write_bytes(orjson.dumps(seed) + bytes([j]))
    atheris.Setup([*sys.argv, str(corpus)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
