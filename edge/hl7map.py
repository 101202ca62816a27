"""HL7 v2 ORU^R01 observation messages → wardwatch's wire contract.

Parsing is python-hl7's (``hl7.parse``); this module only decides what the fields mean:

* **which vital sign** — OBX-3 (code ^ text ^ coding system). LOINC codes for heart rate,
  systolic, diastolic and mean pressure (non-invasive and invasive) and glucose are built
  in (:data:`LOINC`), and the IEEE 11073 MDC codes monitors use (:data:`MDC`); a table
  of vendor codes (``[bridge.codes]``, ``"SYSTEM^CODE" = "metric"``) adds to them. A code
  none of them knows is not an error: monitors send SpO2, respiration, temperature...
  which wardwatch does not watch; they are counted per code and the message is accepted.
* **which unit** — OBX-6. A UCUM code wardwatch accepts for that vital sign passes as
  is; common non-UCUM spellings (``mmHg``, ``bpm``, ``mg/dl``) and the MDC unit codes
  monitors send are translated (:data:`UNIT_ALIASES`). An unknown unit on a known code
  rejects the whole message (``AE``): a value in a unit we cannot read must not become a
  value in the wrong one.
* **when** — OBX-14, else OBR-7, else MSH-7 (HL7 DTM ``YYYYMMDDHHMM[SS[.S…]][±ZZZZ]``).
  A time without an offset is in the sender's zone: MSH-7's offset when it has one, else
  the bridge's ``timezone`` setting (default: the gateway's own zone).
* **where** — PV1-3, the assigned location (point of care ^ room ^ bed): the ward is the
  point of care, the bed the room, or ``room-bed`` when both are present.
* **who** — PID-3's first identifier, pseudonymised by the caller's keyed hash; never
  forwarded raw.

OBX-11 result status ``X`` (cannot be obtained), ``D`` (deleted) and ``W`` (wrong) carry no
usable value and are skipped; a non-numeric OBX-5 on a known code rejects the message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import hl7

from monitor.vitals import METRIC_IDS, METRICS

#: LOINC codes → wardwatch metric (coding system ``LN``).
LOINC: Mapping[str, str] = {
    "8867-4": "hr",  # Heart rate
    "76282-3": "hr",  # Heart rate.beat-to-beat by EKG
    "8480-6": "sbp",  # Systolic blood pressure
    "8459-0": "sbp",  # ... sitting
    "8460-8": "sbp",  # ... standing
    "8461-6": "sbp",  # ... supine
    "76215-3": "sbp",  # Invasive systolic blood pressure
    "8462-4": "dbp",  # Diastolic blood pressure
    "8453-3": "dbp",  # ... sitting
    "8454-1": "dbp",  # ... standing
    "8455-8": "dbp",  # ... supine
    "76213-8": "dbp",  # Invasive diastolic blood pressure
    "8478-0": "map",  # Mean blood pressure
    "76214-6": "map",  # Invasive mean blood pressure
    "2339-0": "glucose",  # Glucose [Mass/volume] in Blood
    "2345-7": "glucose",  # Glucose [Mass/volume] in Serum or Plasma
    "41653-7": "glucose",  # Glucose [Mass/volume] in Capillary blood by Glucometer
    "15074-8": "glucose",  # Glucose [Moles/volume] in Blood
    "14743-9": "glucose",  # Glucose [Moles/volume] in Capillary blood by Glucometer
    "14749-6": "glucose",  # Glucose [Moles/volume] in Serum or Plasma
}
LOINC_SYSTEMS = ("LN", "LOINC", "")

#: IEEE 11073-10101 (MDC) codes, as bedside monitors send them (coding system ``MDC``).
MDC: Mapping[str, str] = {
    "147842": "hr",  # MDC_ECG_HEART_RATE
    "149530": "hr",  # MDC_PULS_OXIM_PULS_RATE
    "150021": "sbp", "150022": "dbp", "150023": "map",  # MDC_PRESS_BLD_NONINV_SYS/DIA/MEAN
    "150017": "sbp", "150018": "dbp", "150019": "map",  # MDC_PRESS_BLD_ART_SYS/DIA/MEAN
    "150033": "sbp", "150034": "dbp", "150035": "map",  # MDC_PRESS_BLD_ART_ABP_SYS/DIA/MEAN
}
MDC_SYSTEMS = ("MDC",)

#: Unit spellings that are not UCUM (or are UCUM synonyms) → the UCUM code the wire takes.
UNIT_ALIASES: Mapping[str, str] = {
    "bpm": "/min", "beats/min": "/min", "/min": "/min", "1/min": "/min", "min-1": "/min",
    "{beats}/min": "{beats}/min", "{beat}/min": "{beat}/min",
    "mmhg": "mm[Hg]", "mm hg": "mm[Hg]", "mm[hg]": "mm[Hg]", "kpa": "kPa",
    "mg/dl": "mg/dL", "mmol/l": "mmol/L",
    # IEEE 11073-10101 unit codes, as monitors send them in OBX-6.
    "264864": "/min", "mdc_dim_beat_per_min": "/min",
    "266016": "mm[Hg]", "mdc_dim_mmhg": "mm[Hg]",
    "3872": "kPa", "mdc_dim_kilo_pascal": "kPa",
    "2130": "mg/dL", "mdc_dim_milli_g_per_dl": "mg/dL",
    "4722": "mmol/L", "mdc_dim_milli_mole_per_l": "mmol/L",
}

SKIP_STATUS = frozenset("XDW")
_DTM = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


class Refused(Exception):
    """Why a message cannot be taken: ``code`` is the MSA-1 answer (``AE`` or ``AR``),
    ``reason`` a short counter label, ``text`` the explanation sent back in MSA-3."""

    def __init__(self, code: str, reason: str, text: str) -> None:
        super().__init__(text)
        self.code, self.reason, self.text = code, reason, text


@dataclass(slots=True)
class Mapped:
    """One message's observations for one bed, in the wire's terms."""

    ward: str
    bed: str
    patient_id: str  # raw PID-3 (the caller pseudonymises it); "" if absent
    sent: float | None  # MSH-7 as epoch seconds
    obs: list[dict[str, object]] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)  # unknown OBX-3 codes, counted
    control_id: str = ""


def parse_time(text: str, zone: dt.tzinfo) -> float:
    """HL7 DTM → epoch seconds; ``zone`` for a time without an offset."""
    m = _DTM.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not an HL7 date/time: {text!r}")
    moment = hl7.parse_datetime(text.strip())  # python-hl7 reads every precision
    if moment is None:
        raise ValueError(f"not an HL7 date/time: {text!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return float(moment.timestamp())


def zone_of(name: str) -> dt.tzinfo:
    """The ``timezone`` setting: an IANA name, or "" for the gateway's own zone."""
    if not name:
        local = dt.datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    return ZoneInfo(name)


def _get(seg: hl7.Segment, fld: int, comp: int = 1, rep: int = 1) -> str:
    try:
        return str(seg.extract_field(1, fld, rep, comp)).strip()
    except (IndexError, KeyError):  # the field or component is not there
        return ""


def _location(msg: hl7.Message) -> tuple[str, str]:
    try:
        pv1 = msg.segment("PV1")
    except KeyError:
        raise Refused("AR", "no_location", "no PV1 segment: the bed is unknown") from None
    ward, room, bed = _get(pv1, 3, 1), _get(pv1, 3, 2), _get(pv1, 3, 3)
    bed_name = f"{room}-{bed}" if room and bed else room or bed
    if not (_NAME.fullmatch(ward) and _NAME.fullmatch(bed_name)):
        raise Refused("AR", "bad_location",
                      f"PV1-3 {ward!r}^{room!r}^{bed!r}: need point of care and room or bed "
                      "(letters, digits, '_', '.', '-'; at most 32)")
    return ward, bed_name


def map_message(msg: hl7.Message, codes: Mapping[str, str], zone: dt.tzinfo) -> Mapped:
    """The observations of one parsed ORU^R01, or :class:`Refused`.

    ``codes`` maps vendor codes (``"SYSTEM^CODE"``) to metrics, on top of :data:`LOINC`.
    """
    msh = msg.segment("MSH")
    kind = (_get(msh, 9, 1), _get(msh, 9, 2))
    control_id = _get(msh, 10)
    if kind != ("ORU", "R01"):
        raise Refused("AR", "unsupported_type",
                      f"message type {'^'.join(kind)!r}: this bridge takes ORU^R01")
    sent_text = _get(msh, 7)
    sent: float | None = None
    if sent_text:
        try:
            sent = parse_time(sent_text, zone)
        except ValueError as exc:
            raise Refused("AE", "bad_time", f"MSH-7: {exc}") from None
        off = _DTM.fullmatch(sent_text)
        if off and off.group(8):  # the sender's own offset for its naive times
            sign = 1 if off.group(8)[0] == "+" else -1
            hh, mm = int(off.group(8)[1:3]), int(off.group(8)[3:5])
            zone = dt.timezone(sign * dt.timedelta(hours=hh, minutes=mm))
    ward, bed = _location(msg)
    patient = ""
    with contextlib.suppress(KeyError):  # no PID: an unnamed bed is still watched
        patient = _get(msg.segment("PID"), 3, 1)
    out = Mapped(ward, bed, patient, sent, control_id=control_id)
    obr_time = ""
    for seg in msg:
        name = str(seg[0])
        if name == "OBR":
            obr_time = _get(seg, 7)
        elif name == "OBX":
            _obx(seg, out, codes, zone, obr_time or sent_text)
    if not out.obs and not out.ignored:
        raise Refused("AE", "no_observations", "no OBX segment with a value")
    return out


def _obx(seg: hl7.Segment, out: Mapped, codes: Mapping[str, str], zone: dt.tzinfo,
         fallback_time: str) -> None:
    code, system = _get(seg, 3, 1), _get(seg, 3, 3)
    metric = codes.get(f"{system}^{code}")
    if metric is None and system.upper() in LOINC_SYSTEMS:
        metric = LOINC.get(code)
    if metric is None and system.upper() in MDC_SYSTEMS:
        metric = MDC.get(code)
    if metric is None:
        key = f"{system}^{code}" if system else code
        out.ignored[key] = out.ignored.get(key, 0) + 1
        return
    if _get(seg, 11).upper() in SKIP_STATUS:
        return
    where = f"OBX {_get(seg, 1) or '?'} ({code})"
    raw = _get(seg, 5)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # "nan", "inf" and structured numerics (SN "<^40") too
        raise Refused("AE", "bad_value", f"{where}: OBX-5 {raw[:40]!r} is not a number")
    unit_text = _get(seg, 6, 1)
    unit = _unit(metric, unit_text)
    if unit is None:
        accepted = ", ".join(METRICS[METRIC_IDS[metric]].units)
        raise Refused("AE", "bad_unit",
                      f"{where}: unit {unit_text!r} is not one of {accepted} (or an alias)")
    when = _get(seg, 14) or fallback_time
    if not when:
        raise Refused("AE", "no_time", f"{where}: no OBX-14, OBR-7 or MSH-7 time")
    try:
        t = parse_time(when, zone)
    except ValueError as exc:
        raise Refused("AE", "bad_time", f"{where}: {exc}") from None
    out.obs.append({"metric": metric, "t": t, "v": value, "unit": unit})


def _unit(metric: str, text: str) -> str | None:
    accepted = METRICS[METRIC_IDS[metric]].units
    if text in accepted:
        return text
    alias = UNIT_ALIASES.get(text.lower())
    return alias if alias in accepted else None
