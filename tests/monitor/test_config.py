"""Settings precedence and errors."""

from __future__ import annotations

import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from monitor.config import Settings, load
from monitor.errors import ConfigError
from monitor.ruleset import RuleSet

REPO = Path(__file__).resolve().parents[2]


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "w.toml"
    cfg.write_text('[mqtt]\nurl = "mqtt://file:1"\nclient_id = "gw-1"\n[metrics]\nport = 1\n')
    s = load(cfg, env={"WARDWATCH_MQTT_URL": "mqtt://env:2", "WARDWATCH_METRICS_PORT": "2"},
             overrides={"metrics": {"port": 3}})
    assert s.mqtt.url == "mqtt://env:2"
    assert s.mqtt.client_id == "gw-1"
    assert s.metrics.port == 3
    assert s.influx.url == ""


def test_documented_example_config_names_every_key_with_its_default() -> None:
    path = REPO / "deploy" / "wardwatch.toml"
    documented = tomllib.loads(path.read_text())
    defaults = Settings()
    for section in fields(Settings):
        value = getattr(defaults, section.name)
        if section.name == "rules":  # examples only, commented out (see test_rules_*)
            assert "rules" not in documented and value == {}
            continue
        if not is_dataclass(value):
            assert documented[section.name] == value
            continue
        keys = {f.name for f in fields(value)}
        assert set(documented[section.name]) == keys, section.name
        for key in keys - {"dir"}:
            doc = documented[section.name][key]
            doc = tuple(doc) if isinstance(doc, list) else doc
            assert doc == getattr(value, key), f"{section.name}.{key}"
    assert load(path, env={}).influx.api == "v1"


@pytest.mark.parametrize(
    ("toml", "env"),
    [
        ('[mqtt]\nurll = "x"\n', {}),
        ("[nosuch]\nx = 1\n", {}),
        ('[metrics]\nport = "nine"\n', {}),
        ('[influx]\napi = "v3"\n', {}),
        ('[rules."4A"."hr.nosuch"]\nenabled = false\n', {}),
        ('[rules."4A"."hr.news2.1"]\ndelay = 5\n', {}),
        ('[rules."4A"."hr.news2.1"]\npriority = "urgent"\n', {}),
        ('[rules."4A"."hr.news2.3"]\nthreshold = 100.0\n', {}),  # below news2.2's 110
        ("[alarms]\nsnooze_default_s = 7200.0\n", {}),
        ("", {"WARDWATCH_METRICS_PORT": "many"}),
        ("", {"WARDWATCH_MQTT_NOPE": "1"}),
        ("[acks]\ntrusted_clients = [1]\n", {}),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, toml: str, env: dict[str, str]) -> None:
    cfg = tmp_path / "w.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError):
        load(cfg, env=env)


def test_trusted_clients_from_a_list_or_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "w.toml"
    cfg.write_text('[acks]\ntrusted_clients = ["station-4A", "pager-gw"]\n')
    assert load(cfg, env={}).acks.trusted_clients == ("station-4A", "pager-gw")
    env = {"WARDWATCH_ACKS_TRUSTED_CLIENTS": "station-4B, station-4C,"}
    assert load(cfg, env=env).acks.trusted_clients == ("station-4B", "station-4C")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path / "absent.toml", env={})


def test_rules_from_the_documented_examples_apply_per_ward(tmp_path: Path) -> None:
    documented = (REPO / "deploy" / "wardwatch.toml").read_text()
    examples = [ln[2:] for ln in documented.splitlines() if ln.startswith("# [rules.")
                or ln.startswith("# delay_s") or ln.startswith("# enabled")]
    cfg = tmp_path / "w.toml"
    cfg.write_text("\n".join(examples) + "\n")
    s = load(cfg, env={})
    rules = RuleSet(s.rules)
    hr_high = rules.for_bed("4A", "1").by_name["hr.high"]
    assert hr_high.levels[0].code == "hr.news2.1" and hr_high.levels[0].delay_s == 600.0
    assert "glucose.rise" not in rules.for_bed("4A", "1").by_name  # its only level is off
    assert "glucose.rise" in rules.for_bed("5B", "1").by_name
    assert RuleSet().for_bed("4A", "1").by_name["hr.high"].levels[0].code == "hr.news2.2"


def test_a_client_certificate_needs_tls_and_readable_files(tmp_path: Path) -> None:
    import subprocess

    from monitor.mqtt import client_args

    key, crt = tmp_path / "c.key", tmp_path / "c.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-days", "1", "-subj", "/CN=4A\\/12"], check=True,
                   capture_output=True)
    args = client_args("mqtts://broker.ward:8883", identifier="x", cert_file=str(crt),
                       key_file=str(key))
    assert args["port"] == 8883 and args["tls_context"] is not None
    with pytest.raises(ConfigError, match="need an mqtts://"):
        client_args("mqtt://broker.ward:1883", identifier="x", cert_file=str(crt))
    wrong = tmp_path / "wrong.key"
    wrong.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as err:
        client_args("mqtts://broker.ward:8883", identifier="x", cert_file=str(crt),
                    key_file=str(wrong))
    assert "c2VjcmV0" not in str(err.value)  # names the files, never their contents
    settings = load(None, overrides={"mqtt": {"cert_file": str(crt), "key_file": str(key)}})
    assert settings.mqtt.tls_files() == {"ca_file": "", "cert_file": str(crt),
                                         "key_file": str(key)}


def test_a_broker_password_never_reaches_a_log_line() -> None:
    from monitor.mqtt import redacted

    assert redacted("mqtt://wardwatch:s3cret@127.0.0.1:1884") == \
        "mqtt://wardwatch:***@127.0.0.1:1884"
    assert redacted("mqtts://h:8883") == "mqtts://h:8883"
    assert redacted("mqtt://u%40x:p%3Aw@h") == "mqtt://u%40x:***@h"
