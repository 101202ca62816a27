"""Settings: defaults, then a TOML file, then ``WARDWATCH_<SECTION>_<KEY>`` variables, then flags.

Every key is documented in ``deploy/wardwatch.toml``; an unknown key is an error, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypedDict, get_type_hints

from monitor.errors import ConfigError
from monitor.wire import DEFAULT_LIMITS, OBS_SUBSCRIPTION, Limits


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "wardwatch")


class TlsFiles(TypedDict):
    """The TLS files of a broker connection, as keyword arguments."""

    ca_file: str
    cert_file: str
    key_file: str


@dataclass(frozen=True, slots=True)
class MqttSettings:
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "wardwatch"
    subscribe: str = OBS_SUBSCRIPTION
    ca_file: str = ""
    cert_file: str = ""  # a client certificate (PEM), with mqtts://
    key_file: str = ""  # its private key (PEM); empty: in cert_file
    keepalive: int = 30
    max_in_flight: int = 100

    def tls_files(self) -> TlsFiles:
        return {"ca_file": self.ca_file, "cert_file": self.cert_file,
                "key_file": self.key_file}


@dataclass(frozen=True, slots=True)
class IngestSettings:
    max_payload_bytes: int = DEFAULT_LIMITS.max_payload_bytes
    max_future_s: float = DEFAULT_LIMITS.max_future_s
    max_past_s: float = DEFAULT_LIMITS.max_past_s
    batch_max: int = 2000
    queue_size: int = 10_000

    def limits(self) -> Limits:
        return Limits(self.max_payload_bytes, self.max_future_s, self.max_past_s)


@dataclass(frozen=True, slots=True)
class InfluxSettings:
    url: str = ""  # empty: history goes to SQLite in store.dir
    api: str = "v1"  # v1 (InfluxDB 1.x /write) or v2 (influxdb-client)
    database: str = "wardwatch"
    retention_policy: str = ""
    username: str = ""
    password: str = ""
    token: str = ""
    org: str = ""
    bucket: str = "wardwatch"
    batch_size: int = 5000
    flush_interval_s: float = 1.0


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    host: str = "127.0.0.1"
    port: int = 9108  # 0: no /metrics endpoint


@dataclass(frozen=True, slots=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 0  # the station page; 0: not served
    secure_cookies: bool = False  # set when served over HTTPS (behind a TLS proxy)
    session_idle_s: float = 1800.0  # a station session ends after this long unused
    session_max_s: float = 43200.0  # ... and this long after sign-in (a 12 h shift)
    trend_hours: float = 24.0  # per-minute trends kept in memory for the page
    # wards whose staff read glucose in mmol/L ("*": every ward); the others, mg/dL
    mmol_wards: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    escalate_high_s: float = 120.0  # unacknowledged this long: escalate (0: never)
    escalate_medium_s: float = 600.0
    escalate_low_s: float = 0.0
    escalate_to: str = "charge nurse"
    snooze_default_s: float = 600.0
    snooze_max_s: float = 3600.0
    ack_rearm_high_s: float = 1800.0  # an acknowledged high alarm sounds again (0: never)
    tick_s: float = 1.0  # how often timers, stale streams and the self-check run

    def escalate_after(self, priority: str) -> float:
        if priority == "high":
            return self.escalate_high_s
        if priority == "medium":
            return self.escalate_medium_s
        return self.escalate_low_s


@dataclass(frozen=True, slots=True)
class AckSettings:
    # broker users (the last level of wardwatch/v1/ack/{ward}/{bed}/{client}) whose MQTT
    # acks are accepted; empty: any sender, including the plain ack/{ward}/{bed} topic.
    # Acks from the station page are signed in there and are not affected.
    trusted_clients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreSettings:
    dir: str = field(default_factory=_default_state_dir)
    checkpoint_s: float = 60.0  # models.db: per-stream model state; 0: not kept


@dataclass(frozen=True, slots=True)
class PseudonymSettings:
    key_file: str = ""  # HMAC keys (monitor/pseudonym.py); empty: identifiers not forwarded


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """``wardwatch bridge``: HL7 v2 over MLLP in, the wire contract out (edge/bridge.py)."""

    listen: str = "127.0.0.1:2575"
    client_id: str = "wardwatch-bridge"
    application: str = "WARDWATCH"  # MSH-3 of its ACKs
    facility: str = ""  # MSH-4 of its ACKs (default: the host name)
    max_message_bytes: int = 4 * 1024 * 1024
    spool_max_messages: int = 200_000
    window: int = 200  # messages handed to the broker awaiting PUBACK
    timezone: str = ""  # for HL7 times without an offset; empty: the gateway's zone
    max_clock_offset_s: float = 60.0  # device clocks further off are corrected
    device_timeout_s: float = 300.0  # silence after which a bed's presence goes offline
    # a cluster's NATS URLs, comma-separated: observations go to its JetStream, and leave
    # the spool on the stream's acknowledgement (edge/jsforward.py); empty: MQTT, [mqtt] url
    nats: str = ""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9104  # 0: no /metrics
    # vendor codes: "SYSTEM^CODE" = "metric" (e.g. "MDC^147842" = "hr"), beside LOINC
    codes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """``wardwatch run --worker-index K --worker-of N``: one worker of a cluster
    (monitor/cluster.py, deploy/cluster/)."""

    partitions: int = 12  # as the brokers' subject mapping partitions (ward, bed)
    nats: str = ""  # the cluster's NATS URLs, comma-separated: its key-value store
    bucket: str = "wardwatch"  # the key-value bucket of partition states
    replicas: int = 3  # copies of each partition state (at most the node count)
    checkpoint_s: float = 1.0  # how often a held partition's state is committed
    retention_s: float = 86_400.0  # how long the intake stream keeps messages
    settle_s: float = 5.0  # at start, how long to wait for the other workers
    # the station across workers ([http] port): the secret they share for asking each
    # other, and how the others reach this one's (default http://{[http] host}:{port})
    peer_secret_file: str = ""
    station_url: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    influx: InfluxSettings = field(default_factory=InfluxSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    alarms: AlarmSettings = field(default_factory=AlarmSettings)
    acks: AckSettings = field(default_factory=AckSettings)
    pseudonym: PseudonymSettings = field(default_factory=PseudonymSettings)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    # [rules."<ward>"."<alarm code>"] tables ("*": every ward), parsed by monitor.ruleset
    rules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    log_level: str = "INFO"


_SECTIONS = {f.name: f for f in fields(Settings) if f.name not in ("log_level", "rules")}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    if typ == Mapping[str, str]:  # a TOML table of strings
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ConfigError(f"{where}: expected a table of strings, got {value!r}")
        return dict(value)
    if typ == tuple[str, ...]:  # a TOML list of strings, or "a,b" from the environment
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(x, str) for x in items):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(x.strip() for x in items if x.strip())
    if typ is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        elif isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return typ(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from exc
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _apply(section: Any, values: Mapping[str, Any], where: str) -> Any:
    hints = get_type_hints(type(section))
    known = {f.name for f in fields(section)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return replace(section, **{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def load(path: str | Path | None = None, *, env: Mapping[str, str] | None = None,
         overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """Settings from defaults < TOML file < environment < ``overrides`` (the CLI flags)."""
    env = os.environ if env is None else env
    settings = Settings()
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if path is not None:
        try:
            with open(path, "rb") as fh:
                layers.append((str(path), tomllib.load(fh)))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    from_env: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("WARDWATCH_"):
            continue
        rest = name[len("WARDWATCH_"):].lower()
        if rest == "log_level":
            from_env["log_level"] = value
            continue
        sec, _, key = rest.partition("_")
        if sec in _SECTIONS and key:
            from_env.setdefault(sec, {})[key] = value
    layers.append(("environment", from_env))
    layers.append(("flags", overrides or {}))

    for where, data in layers:
        for key, value in data.items():
            if key == "log_level":
                settings = replace(settings, log_level=_coerce(value, str, f"{where}.log_level"))
            elif key == "rules" and isinstance(value, Mapping):
                settings = replace(settings, rules={**settings.rules, **_rules(value, where)})
            elif key in _SECTIONS and isinstance(value, Mapping):
                sec = _apply(getattr(settings, key), value, f"{where}.{key}")
                settings = replace(settings, **{key: sec})
            else:
                raise ConfigError(f"{where}: unknown setting {key!r}")
    for sec in ("escalate_high_s", "escalate_medium_s", "escalate_low_s", "snooze_max_s",
                "ack_rearm_high_s"):
        if getattr(settings.alarms, sec) < 0:
            raise ConfigError(f"alarms.{sec} must be >= 0")
    if not 0 < settings.alarms.snooze_default_s <= settings.alarms.snooze_max_s:
        raise ConfigError("alarms.snooze_default_s must be > 0 and <= alarms.snooze_max_s")
    if settings.alarms.tick_s <= 0:
        raise ConfigError("alarms.tick_s must be > 0")
    if settings.influx.api not in ("v1", "v2"):
        raise ConfigError(f"influx.api must be 'v1' or 'v2', got {settings.influx.api!r}")
    return settings


def _rules(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``{ward: {code: {key: value}}}``, validated (the rule set rejects unknown codes)."""
    from monitor.ruleset import RuleSet, parse_overrides

    wards = {str(w): parse_overrides(codes, f"{where}.rules.{w}") for w, codes in value.items()}
    rules = RuleSet(wards)
    for ward in wards:
        rules.for_bed(ward, "")  # the thresholds must still nest, ward by ward
    return wards
