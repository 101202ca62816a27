"""The OBX mapping on its own: times, places, codes, units and values (no services)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import hl7
import pytest

from edge.hl7map import Mapped, Refused, map_message, parse_time
from tests.edge.devices import oru

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")


def _map(text: bytes, codes: dict[str, str] | None = None, zone: dt.tzinfo = UTC) -> Mapped:
    return map_message(hl7.parse(text.decode().strip("\r")), codes or {}, zone)


@pytest.mark.parametrize(("dtm", "zone", "expected"), [
    ("20261201101450+0100", UTC, dt.datetime(2026, 12, 1, 9, 14, 50, tzinfo=UTC)),
    ("20261201101450.25-0500", UTC, dt.datetime(2026, 12, 1, 15, 14, 50, 250000, tzinfo=UTC)),
    ("202612011014", UTC, dt.datetime(2026, 12, 1, 10, 14, tzinfo=UTC)),
    # a naive time in the zone the bridge is told: winter +1, summer +2
    ("20261201101450", BERLIN, dt.datetime(2026, 12, 1, 9, 14, 50, tzinfo=UTC)),
    ("20260701101450", BERLIN, dt.datetime(2026, 7, 1, 8, 14, 50, tzinfo=UTC)),
])
def test_hl7_times_with_and_without_offsets(dtm: str, zone: dt.tzinfo,
                                            expected: dt.datetime) -> None:
    assert parse_time(dtm, zone) == expected.timestamp()


@pytest.mark.parametrize("bad", ["2026120x", "yesterday", "2026-12-01T10:14:50Z", ""])
def test_what_is_not_an_hl7_time(bad: str) -> None:
    with pytest.raises(ValueError, match="HL7 date/time"):
        parse_time(bad, UTC)


def test_a_naive_obx_time_takes_msh7s_offset() -> None:
    sent = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    text = oru("N1", "4A^1", [("8867-4^HR^LN", "80", "/min", sent.replace(tzinfo=None))],
               sent=sent)
    m = _map(text, zone=BERLIN)  # MSH-7's -0300 wins over the configured zone
    assert m.obs[0]["t"] == sent.timestamp()


@pytest.mark.parametrize(("pv1", "ward", "bed"), [
    ("4A^12^1", "4A", "12-1"), ("4A^12", "4A", "12"), ("ICU^^B3", "ICU", "B3")])
def test_the_bed_from_pv1_3(pv1: str, ward: str, bed: str) -> None:
    now = dt.datetime.now(UTC)
    m = _map(oru("L1", pv1, [("8867-4^HR^LN", "80", "/min", now)], sent=now))
    assert (m.ward, m.bed) == (ward, bed)


@pytest.mark.parametrize("pv1", ["^12^1", "4A", "4 A^1", "4A^" + "x" * 40])
def test_a_bed_that_cannot_be_named_is_rejected(pv1: str) -> None:
    now = dt.datetime.now(UTC)
    with pytest.raises(Refused) as err:
        _map(oru("L2", pv1, [("8867-4^HR^LN", "80", "/min", now)], sent=now))
    assert err.value.code == "AR" and err.value.reason == "bad_location"


@pytest.mark.parametrize("value", ["nan", "inf", "<^40", "eighty", ""])
def test_a_value_that_is_not_a_finite_number_refuses_the_message(value: str) -> None:
    now = dt.datetime.now(UTC)
    with pytest.raises(Refused) as err:
        _map(oru("V1", "4A^1", [("8867-4^HR^LN", value, "/min", now)], sent=now))
    assert (err.value.code, err.value.reason) == ("AE", "bad_value")


def test_codes_units_and_statuses() -> None:
    now = dt.datetime.now(UTC).replace(microsecond=0)
    text = oru("C1", "4A^1", [
        ("HR-ECG^Heart rate^ACME", "81", "bpm", now),  # a vendor's code, from the table
        ("150022^NIBP dia^MDC", "9.5", "kPa", now),  # MDC code, kPa passes through
        ("2339-0^Glucose^LN", "99", "mg/dl", now),  # a common spelling of mg/dL
        ("8480-6^SBP^LN", "120", "mm[Hg]", now),
        ("59408-5^SpO2^LN", "97", "%", now),  # not watched: counted, not refused
    ], sent=now).replace(b"|F|||" + now.strftime("%Y%m%d%H%M%S+0000").encode() + b"\rOBX|4",
                         b"|X|||" + now.strftime("%Y%m%d%H%M%S+0000").encode() + b"\rOBX|4")
    m = _map(text, {"ACME^HR-ECG": "hr"})
    got = [(o["metric"], o["v"], o["unit"]) for o in m.obs]
    # the glucose OBX says status X (cannot be obtained): skipped
    assert got == [("hr", 81.0, "/min"), ("dbp", 9.5, "kPa"), ("sbp", 120.0, "mm[Hg]")]
    assert m.ignored == {"LN^59408-5": 1}
