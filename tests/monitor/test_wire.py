"""Decoding observation payloads: the contract, the rejection reasons, and arbitrary bytes."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.vitals import GLUCOSE, HR, SBP
from monitor.wire import REASONS, Limits, deadletter_payload, decode, parse_topic

NOW = 1_763_856_000.0
TOPIC = "wardwatch/v1/obs/4A/12"


def obs(
    metric: str = "hr", v: object = 82, unit: str = "/min", t: object = NOW
) -> dict[str, object]:
    return {"metric": metric, "t": t, "v": v, "unit": unit}


def enc(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_batch_is_decoded_in_canonical_units() -> None:
    d = decode(TOPIC, enc({"patient": "p-17", "obs": [
        obs(), obs("sbp", 16.0, "kPa"), obs("glucose", 4.0, "mmol/L")]}), NOW)
    assert (d.ward, d.bed, d.patient) == ("4A", "12", "p-17")
    assert d.metric == [HR, SBP, GLUCOSE]
    assert d.v[0] == 82.0
    assert d.v[1] == pytest.approx(120.01, abs=0.01)
    assert d.v[2] == pytest.approx(72.06, abs=0.01)
    assert d.rejections == []


def test_single_bare_observation_and_rfc3339_time() -> None:
    d = decode(TOPIC, enc(obs(t="2025-11-23T00:00:00+00:00")), NOW)
    assert d.metric == [HR]
    assert d.t == [1_763_856_000.0]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"metric": "hr", "t": NOW, "unit": "/min"}, "missing_field"),
        (obs(v="82"), "wrong_type"),
        (obs(v=True), "wrong_type"),
        (obs("spo3"), "unknown_metric"),
        (obs(unit="mmol/L"), "unit_mismatch"),
        (obs(v=-5), "implausible"),
        (obs(t="yesterday"), "bad_timestamp"),
        (obs(t="2025-11-23T00:00:00"), "bad_timestamp"),
        (obs(t=NOW + 3600), "timestamp_future"),
        (obs(t=NOW - 3 * 86_400), "timestamp_past"),
    ],
)
def test_bad_observation_is_rejected_alone(item: dict[str, object], reason: str) -> None:
    d = decode(TOPIC, enc({"obs": [obs(v=90), item, obs(v=91, t=NOW + 1)]}), NOW)
    assert [r.reason for r in d.rejections] == [reason]
    assert d.rejections[0].index == 1
    assert d.v == [90.0, 91.0]


def test_nan_and_infinity_are_non_finite_not_malformed() -> None:
    payload = b'{"obs": [{"metric": "hr", "t": 1763856000, "v": NaN, "unit": "/min"},' \
              b' {"metric": "hr", "t": 1763856000, "v": Infinity, "unit": "/min"},' \
              b' {"metric": "hr", "t": 1763856000, "v": 1e999, "unit": "/min"}]}'
    d = decode(TOPIC, payload, NOW)
    assert [r.reason for r in d.rejections] == ["non_finite"] * 3
    assert d.metric == []


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("wardwatch/v1/obs/4A", enc(obs()), "bad_topic"),
        ("wardwatch/v1/obs/4A/12/extra", enc(obs()), "bad_topic"),
        ("wardwatch/v1/obs/4A/bed 12", enc(obs()), "bad_topic"),
        (TOPIC, b"{not json", "malformed_json"),
        (TOPIC, b"\xff\xfe", "malformed_json"),
        (TOPIC, enc([obs()]), "bad_envelope"),
        (TOPIC, enc({"obs": []}), "bad_envelope"),
        (TOPIC, enc({"obs": obs()}), "bad_envelope"),
        (TOPIC, b" " * 300_000, "oversized"),
    ],
)
def test_whole_payload_rejections(topic: str, payload: bytes, reason: str) -> None:
    d = decode(topic, payload, NOW)
    assert [r.reason for r in d.rejections] == [reason]
    assert d.rejections[0].index is None
    assert d.metric == []


def test_past_bound_can_be_disabled_for_replay() -> None:
    old = NOW - 365 * 86_400
    d = decode(TOPIC, enc(obs(t=old)), NOW, Limits(max_past_s=0))
    assert d.t == [old]


def test_parse_topic() -> None:
    assert parse_topic("wardwatch/v1/obs/ICU-2/07") == ("ICU-2", "07")
    assert parse_topic("wardwatch/v1/alerts/4A/12") is None
    assert parse_topic("wardwatch/v1/obs//12") is None


def test_deadletter_payload_carries_reason_and_offending_item() -> None:
    d = decode(TOPIC, enc({"obs": [obs("spo3")]}), NOW)
    body = orjson.loads(deadletter_payload(TOPIC, b"...", d.rejections[0], NOW))
    assert body["reason"] == "unknown_metric"
    assert body["obs"]["metric"] == "spo3"
    assert body["topic"] == TOPIC


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    d = decode(TOPIC, payload, NOW)
    assert all(r.reason in REASONS for r in d.rejections)
    assert len(d.metric) == len(d.t) == len(d.v)
    assert all(math.isfinite(x) for x in d.v + d.t)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
observation_like = st.fixed_dictionaries(
    {}, optional={"metric": st.sampled_from(["hr", "sbp", "glucose", "x"]) | json_values,
                  "t": st.floats() | st.integers() | st.text(max_size=30),
                  "v": st.floats() | st.integers() | json_values,
                  "unit": st.sampled_from(["/min", "mm[Hg]", "kPa", "mg/dL"]) | json_values},
)


@settings(max_examples=400, deadline=None)
@given(st.lists(observation_like, min_size=1, max_size=5))
def test_structured_garbage_is_rejected_per_observation(items: list[dict[str, object]]) -> None:
    payload = json.dumps({"obs": items}, default=str).encode()
    d = decode(TOPIC, payload, NOW, Limits(max_past_s=0, max_future_s=math.inf))
    assert len(d.metric) + len(d.rejections) == len(items)
    assert all(r.index is not None for r in d.rejections)
