"""The decoders under hypothesis: any topic and payload gives a decision, never an exception.

CI runs a few thousand inputs per property; the full run the README reports is

    WARDWATCH_FUZZ_EXAMPLES=1000000 .venv/bin/pytest tests/monitor/test_fuzz.py -q
"""

from __future__ import annotations

import math
import os
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.vitals import METRICS
from monitor.wire import EARLIEST_T, REASONS, Limits, decode, decode_command

EXAMPLES = int(os.environ.get("WARDWATCH_FUZZ_EXAMPLES", "3000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
NOW = 1_763_856_000.0
LIMITS = Limits()

json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=20,
)
metric = st.one_of(st.sampled_from([m.name for m in METRICS]), st.text(max_size=10))
unit = st.one_of(st.sampled_from(["/min", "mm[Hg]", "kPa", "mg/dL", "mmol/L", "bpm"]),
                 st.text(max_size=8))
timestamp = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(2**64),
                                                                max_value=2**64),
    st.sampled_from(["2025-11-23T00:00:00Z", "2025-11-23T01:00:00+01:00", "0001-01-01T00:00Z",
                     "9999-12-31T23:59:59Z", "2025-11-23T00:00:00", "yesterday", ""]),
    st.text(max_size=30), json_value,
)
observation = st.one_of(
    st.fixed_dictionaries({"metric": metric, "t": timestamp, "v": json_scalar, "unit": unit},
                          optional={"extra": json_value}),
    json_value,
)
envelope = st.one_of(
    st.fixed_dictionaries({"obs": st.one_of(st.lists(observation, max_size=8), json_value)},
                          optional={"patient": json_value}),
    observation,
)
payload = st.one_of(
    envelope.map(lambda d: orjson.dumps(d, option=orjson.OPT_SERIALIZE_NUMPY)
                 if _serialisable(d) else b"{}"),
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
)
topic = st.one_of(
    st.sampled_from(["wardwatch/v1/obs/4A/12", "wardwatch/v1/obs/4A", "wardwatch/v1/obs//1",
                     "wardwatch/v1/obs/4A/12/x", "wardwatch/v1/obs/+/#"]),
    st.builds(lambda w, b: f"wardwatch/v1/obs/{w}/{b}", st.text(max_size=12),
              st.text(max_size=12)),
    st.text(max_size=60),
)
control_topic = st.builds(lambda k, w, b: f"wardwatch/v1/{k}/{w}/{b}",
                          st.sampled_from(["ack", "admit", "status", "other"]),
                          st.text(max_size=8), st.text(max_size=8))


def _serialisable(d: Any) -> bool:
    try:
        orjson.dumps(d)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


@FUZZ
@given(topic, payload)
def test_decode_never_raises_and_accepts_only_sound_observations(t: str, p: bytes) -> None:
    d = decode(t, p, NOW, LIMITS)
    assert all(r.reason in REASONS for r in d.rejections)
    assert len(d.metric) == len(d.t) == len(d.v)
    for mid, ts, v in zip(d.metric, d.t, d.v, strict=True):
        lo, hi = METRICS[mid].device_range
        assert math.isfinite(v) and lo <= v <= hi
        assert EARLIEST_T <= ts <= NOW + LIMITS.max_future_s
    if d.metric:  # something accepted: the topic named a bed
        assert d.ward and d.bed


@FUZZ
@given(control_topic, payload)
def test_decode_command_never_raises(t: str, p: bytes) -> None:
    cmd = decode_command(t, p)
    assert cmd.error is None or cmd.error.reason
