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


# Payloads that are mostly sound, so that the typed fast path is taken and left at every
# kind of flaw: sound observations, and ones with one field drawn from a few bad values.
SOUND = {"hr": "/min", "sbp": "mm[Hg]", "dbp": "kPa", "map": "mm[Hg]", "glucose": "mmol/L"}
sound_obs = st.sampled_from(sorted(SOUND)).flatmap(lambda m: st.fixed_dictionaries(
    {"metric": st.just(m),
     "t": st.one_of(st.floats(NOW - 4000, NOW + 299), st.integers(int(NOW) - 4000, int(NOW)),
                    st.just(NOW * 1000), st.just("2025-11-22T23:59:00.5+00:00")),
     "v": st.floats(1, 30) if SOUND[m] in ("kPa", "mmol/L") else st.integers(30, 200),
     "unit": st.just(SOUND[m])},
    optional={"extra": st.sampled_from([1, "x", None])}))
FLAWS = {"metric": ["spo2", "", "HR"], "unit": ["bpm", "", "mg/dL"],
         "v": [True, "80", 1e300, -5.0, 0.0, 999.0, -1e-9],
         "t": [True, 1e300, -1.0, NOW + 301, NOW - 90_000, 946_684_799.0,
               "2025-11-23T00:00:00", "nope", NOW * 1e6],
         "patient": [5, None], "obs": [1]}
flawed_obs = st.tuples(sound_obs, st.sampled_from(sorted(FLAWS)), st.integers(0, 8)).map(
    lambda x: {**x[0], x[1]: FLAWS[x[1]][x[2] % len(FLAWS[x[1]])]})
good_obs = st.one_of(sound_obs, sound_obs, sound_obs, flawed_obs)
good_payload = st.one_of(
    st.fixed_dictionaries({"obs": st.lists(good_obs, min_size=0, max_size=6)},
                          optional={"patient": st.sampled_from(["p-1", "x" * 70, 3, None]),
                                    "note": st.just("hi")}),
    good_obs,
).map(orjson.dumps)


@FUZZ
@given(st.sampled_from(["wardwatch/v1/obs/4A/12", "wardwatch/v1/obs/4A"]),
       st.one_of(good_payload, payload),
       st.sampled_from([LIMITS, Limits(max_past_s=0)]))
def test_the_fast_path_decides_exactly_as_the_full_path(t: str, p: bytes,
                                                        limits: Limits) -> None:
    assert decode(t, p, NOW, limits) == decode(t, p, NOW, limits, fast=False)
