"""Wire contract v1: topics, and decoding observation payloads into canonical samples.

Rejection policy (documented in the README):

* The **whole payload** is rejected for a topic of the wrong shape (``bad_topic``), a
  payload over the size limit (``oversized``), bytes that are not UTF-8 JSON
  (``malformed_json``) and an envelope that is not an object with an ``obs`` array
  (``bad_envelope``).
* Otherwise each **observation** stands alone: a bad one is rejected with its reason
  (``missing_field``, ``wrong_type``, ``unknown_metric``, ``unit_mismatch``,
  ``non_finite``, ``implausible``, ``bad_timestamp``, ``timestamp_future``,
  ``timestamp_past``) and the good ones in the same payload are accepted.

:func:`decode` never raises on any input; that is a tested property.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, Final

import fastjsonschema
import msgspec
import orjson

from monitor.timestamps import MS_FROM, TimestampError
from monitor.timestamps import parse as parse_timestamp
from monitor.vitals import METRIC_IDS, METRICS

OBS_PREFIX: Final = "wardwatch/v1/obs/"
OBS_SUBSCRIPTION: Final = "wardwatch/v1/obs/#"
ALERTS_TOPIC: Final = "wardwatch/v1/alerts/{ward}/{bed}"
DEADLETTER_TOPIC: Final = "wardwatch/v1/deadletter"
# Control topics, all ``wardwatch/v1/{kind}/{ward}/{bed}``: acknowledgements from nurses,
# admissions (per-patient rule overrides, discharge) and device presence (last will).
CONTROL_KINDS: Final = ("ack", "admit", "status")
CONTROL_SUBSCRIPTIONS: Final = tuple(f"wardwatch/v1/{k}/#" for k in CONTROL_KINDS)

# Ward and bed names: short, printable, safe as MQTT topic levels and InfluxDB tags.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
#: a broker user name as the last level of an ack topic (no wildcards, no separators)
_CLIENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")

REASONS: Final = (
    "bad_topic",
    "oversized",
    "malformed_json",
    "bad_envelope",
    "missing_field",
    "wrong_type",
    "unknown_metric",
    "unit_mismatch",
    "non_finite",
    "implausible",
    "bad_timestamp",
    "timestamp_future",
    "timestamp_past",
)


def _load_validators() -> tuple[Any, Any]:
    text = resources.files("monitor").joinpath("schema/obs-v1.json").read_text("utf-8")
    schema = json.loads(text)
    defs = schema["$defs"]
    draft = {"$schema": schema["$schema"]}
    return (
        fastjsonschema.compile({**defs["batch"], **draft}),
        fastjsonschema.compile({**defs["observation"], **draft}),
    )


_validate_batch, _validate_obs = _load_validators()


def _load_control() -> dict[str, Any]:
    text = resources.files("monitor").joinpath("schema/control-v1.json").read_text("utf-8")
    schema = json.loads(text)
    draft = {"$schema": schema["$schema"]}
    return {k: fastjsonschema.compile({**d, **draft}) for k, d in schema["$defs"].items()}


_validate_control = _load_control()


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what ingest accepts; see ``[ingest]`` in deploy/wardwatch.toml."""

    max_payload_bytes: int = 262_144
    max_future_s: float = 300.0
    max_past_s: float = 86_400.0  # 0 disables the check (replay of old recordings)


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why (part of) a payload was refused. ``index`` is the observation's, or None."""

    reason: str
    detail: str
    index: int | None = None
    item: object = None


@dataclass(slots=True)
class Decoded:
    """The accepted samples of one payload, in canonical units, and what was refused."""

    ward: str = ""
    bed: str = ""
    patient: str | None = None
    metric: list[int] = field(default_factory=list)
    t: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def parse_topic(topic: str) -> tuple[str, str] | None:
    """``wardwatch/v1/obs/{ward}/{bed}`` → (ward, bed); anything else → None."""
    if topic in _TOPICS:
        return _TOPICS[topic]
    where = None
    if topic.startswith(OBS_PREFIX):
        rest = topic[len(OBS_PREFIX) :].split("/")
        if len(rest) == 2 and all(_NAME.fullmatch(x) for x in rest):
            where = rest[0], rest[1]
    if len(_TOPICS) >= _TOPICS_MAX:  # a flood of distinct topics: start the cache again
        _TOPICS.clear()
    _TOPICS[topic] = where
    return where


_TOPICS: Final[dict[str, tuple[str, str] | None]] = {}  # topic → parse_topic's answer
_TOPICS_MAX: Final = 65_536


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses NaN/Infinity literals and integers beyond 64 bits. Parse those with
    # the stdlib so they are rejected per observation with a precise reason
    # (``non_finite``), not as malformed JSON. Only the failure path pays for this.
    try:
        return json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return _MALFORMED


_MALFORMED: Final = object()
EARLIEST_T: Final = 946_684_800.0  # 2000-01-01T00:00:00Z: no monitor sends older data


def _parse_time(raw: object) -> float | Rejection:
    try:
        return parse_timestamp(raw)
    except TimestampError as exc:
        return Rejection(exc.reason, str(exc))


def decode(topic: str, payload: bytes, now: float, limits: Limits | None = None, *,
           fast: bool = True) -> Decoded:
    """Decode one MQTT message. Never raises; refusals are in ``rejections``.

    ``now`` is the wall clock at receipt, used only for the future/past bounds.
    ``fast`` False: always the path that names reasons (the tests' reference).
    """
    limits = limits or DEFAULT_LIMITS
    out = Decoded()
    where = parse_topic(topic)
    if where is None:
        out.rejections.append(Rejection("bad_topic", f"not {OBS_PREFIX}{{ward}}/{{bed}}"))
        return out
    out.ward, out.bed = where
    if len(payload) > limits.max_payload_bytes:
        out.rejections.append(
            Rejection("oversized", f"{len(payload)} bytes > {limits.max_payload_bytes}")
        )
        return out
    lo_t = now - limits.max_past_s if limits.max_past_s > 0 else -math.inf
    hi_t = now + limits.max_future_s
    if fast and _fast(payload, out, lo_t, hi_t):
        return out
    doc = _loads(payload)
    if doc is _MALFORMED:
        out.rejections.append(Rejection("malformed_json", "not UTF-8 JSON"))
        return out

    if isinstance(doc, dict) and "obs" in doc:
        try:
            _validate_batch(doc)
        except fastjsonschema.JsonSchemaValueException as exc:
            out.rejections.append(Rejection("bad_envelope", exc.message[:200]))
            return out
        out.patient = doc.get("patient")
        items: list[Any] = doc["obs"]
    elif isinstance(doc, dict):
        patient = doc.get("patient")
        out.patient = patient if isinstance(patient, str) else None
        items = [doc]  # one bare observation
    else:
        out.rejections.append(Rejection("bad_envelope", "payload must be a JSON object"))
        return out

    for i, item in enumerate(items):
        bad = _decode_obs(item, out, lo_t, hi_t)
        if bad is not None:
            out.rejections.append(Rejection(bad.reason, bad.detail, i, item))
    return out


# -- the fast path: typed decoding of payloads that are wholly valid -------------------
# msgspec decodes straight into these (the JSON Schema's constraints, as types); one
# loop then checks what a schema cannot (known metric, its unit, range, time bounds).
# Any payload with anything to refuse is decoded again by the path below, which names
# each reason; so the fast path only decides how fast, never what is accepted.
_Metric = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
_Unit = Annotated[str, msgspec.Meta(max_length=32)]
_Time = float | Annotated[str, msgspec.Meta(max_length=64)]


class _Obs(msgspec.Struct):
    metric: _Metric
    t: _Time
    v: float
    unit: _Unit


class _Batch(msgspec.Struct):
    obs: Annotated[list[_Obs], msgspec.Meta(min_length=1, max_length=10000)]
    patient: Annotated[str, msgspec.Meta(max_length=64)] | msgspec.UnsetType = msgspec.UNSET


class _Single(_Obs, forbid_unknown_fields=True):  # anything more: the full path decides
    patient: str | None = None


_BATCH: Final = msgspec.json.Decoder(_Batch)
_SINGLE: Final = msgspec.json.Decoder(_Single)
_SPEC: Final = [(m.units, *m.device_range) for m in METRICS]


def _fast(payload: bytes, out: Decoded, lo_t: float, hi_t: float) -> bool:
    """Decode a payload whose every observation is acceptable into ``out``; False
    (``out`` untouched) if anything in it would be refused."""
    try:
        env = _BATCH.decode(payload)
        items: list[_Obs] = env.obs
        patient = None if env.patient is msgspec.UNSET else env.patient
    except msgspec.DecodeError:
        try:
            one = _SINGLE.decode(payload)
        except msgspec.DecodeError:
            return False
        items, patient = [one], one.patient
    metric: list[int] = []
    ts: list[float] = []
    vs: list[float] = []
    ids, spec, earliest = METRIC_IDS, _SPEC, EARLIEST_T
    for o in items:
        mid = ids.get(o.metric)
        if mid is None:
            return False
        units, lo, hi = spec[mid]
        factor = units.get(o.unit)
        if factor is None:
            return False
        v = o.v * factor
        if not lo <= v <= hi:  # NaN and infinities fail too
            return False
        t = o.t
        if isinstance(t, str):
            try:
                t = parse_timestamp(t)
            except TimestampError:
                return False
        elif abs(t) >= MS_FROM:
            t = t / 1000.0
        if not (earliest <= t <= hi_t and t >= lo_t):
            return False
        metric.append(mid)
        ts.append(t)
        vs.append(v)
    out.patient = patient
    out.metric, out.t, out.v = metric, ts, vs
    return True


def _decode_obs(item: Any, out: Decoded, lo_t: float, hi_t: float) -> Rejection | None:
    """Append one observation to ``out``, or say why not."""
    try:
        _validate_obs(item)
    except fastjsonschema.JsonSchemaValueException as exc:
        reason = "missing_field" if exc.rule == "required" else "wrong_type"
        return Rejection(reason, exc.message[:200])
    name = item["metric"]
    mid = METRIC_IDS.get(name)
    if mid is None:
        return Rejection("unknown_metric", f"unknown metric {name[:32]!r}")
    spec = METRICS[mid]
    factor = spec.units.get(item["unit"])
    if factor is None:
        return Rejection(
            "unit_mismatch",
            f"{name}: unit {item['unit'][:32]!r} is not one of {', '.join(spec.units)}",
        )
    try:
        v = float(item["v"]) * factor
    except OverflowError:
        v = math.inf
    if not math.isfinite(v):
        return Rejection("non_finite", f"{name}: value is NaN or infinite")
    lo, hi = spec.device_range
    if not lo <= v <= hi:
        return Rejection("implausible", f"{name}: {v:g} {spec.unit} outside [{lo:g}, {hi:g}]")
    t = _parse_time(item["t"])
    if isinstance(t, Rejection):
        return t
    if not t >= EARLIEST_T:  # whatever max_past_s says (0 only lifts the rolling bound)
        return Rejection("bad_timestamp", f"t={t!r} is before 2000-01-01T00:00:00Z")
    if t > hi_t:
        return Rejection("timestamp_future", f"t={t:.3f} is {t - hi_t:.0f} s past the limit")
    if t < lo_t:
        return Rejection("timestamp_past", f"t={t:.3f} is older than the limit")
    out.metric.append(mid)
    out.t.append(t)
    out.v.append(v)
    return None


def deadletter_payload(topic: str, payload: bytes, rejection: Rejection, now: float) -> bytes:
    """The JSON published on the dead-letter topic for one rejection."""
    body: dict[str, Any] = {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "topic": topic,
        "received_at": now,
    }
    if rejection.index is not None:
        body["index"] = rejection.index
        try:
            body["obs"] = orjson.loads(orjson.dumps(rejection.item, default=str))
        except (TypeError, orjson.JSONEncodeError):
            body["obs"] = repr(rejection.item)[:1024]
    else:
        body["payload"] = payload[:4096].decode("utf-8", errors="replace")
        body["payload_bytes"] = len(payload)
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded control message; ``error`` says why it cannot be used."""

    kind: str  # ack | admit | status
    ward: str
    bed: str
    body: dict[str, Any] = field(default_factory=dict)
    error: Rejection | None = None
    #: an ack's sender as the broker authenticated it: the last level of
    #: ``wardwatch/v1/ack/{ward}/{bed}/{client}``, which the shipped ACL lets each station
    #: write under its own user name only; "" for the plain ``ack/{ward}/{bed}`` topic
    client: str = ""


def control_kind(topic: str) -> str | None:
    """The control kind a topic is addressed to (whatever its shape), or None."""
    parts = topic.split("/", 3)
    if len(parts) >= 3 and parts[0] == "wardwatch" and parts[1] == "v1" \
            and parts[2] in CONTROL_KINDS:
        return parts[2]
    return None


def decode_command(topic: str, payload: bytes) -> Command:
    """Decode a control message. Never raises.

    Device presence accepts the bare words ``online`` / ``offline`` as well as
    ``{"status": ...}``, since last-will payloads are often plain text; an empty payload
    (a retained message being cleared) is a no-op (``body`` empty, no error).
    """
    kind = control_kind(topic) or ""
    rest = topic.split("/")[3:]
    client = rest.pop() if kind == "ack" and len(rest) == 3 else ""
    if not kind or len(rest) != 2 or not all(_NAME.fullmatch(x) for x in rest) \
            or (client and not _CLIENT.fullmatch(client)):
        return Command(kind, "", "", error=Rejection(
            "bad_topic", f"not wardwatch/v1/{kind or '{kind}'}/{{ward}}/{{bed}}"
                         + ("[/{client}]" if kind == "ack" else "")))
    ward, bed = rest
    if len(payload) > 65536:
        return Command(kind, ward, bed, error=Rejection("oversized", f"{len(payload)} bytes"),
                       client=client)
    if kind == "status":
        word = payload.strip().lower()
        if not word:
            return Command(kind, ward, bed)
        if word in (b"online", b"offline"):
            return Command(kind, ward, bed, {"status": word.decode()})
    doc = _loads(payload)
    if doc is _MALFORMED:
        return Command(kind, ward, bed, error=Rejection("malformed_json", "not UTF-8 JSON"),
                       client=client)
    schema = {"ack": "ack", "admit": "admission", "status": "status"}[kind]
    try:
        _validate_control[schema](doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        return Command(kind, ward, bed, error=Rejection("bad_command", exc.message[:200]),
                       client=client)
    return Command(kind, ward, bed, doc, client=client)


def validate_ack(body: Any) -> str | None:
    """Why an acknowledgement body breaks the contract, or None (the station's path)."""
    try:
        _validate_control["ack"](body)
    except fastjsonschema.JsonSchemaValueException as exc:
        return exc.message[:200]
    return None
