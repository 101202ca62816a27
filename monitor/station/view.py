"""What the station shows: the ward as plain data, worst bed first, and its changes.

A bed's entry holds its newest accepted vitals (value, clinicians' unit, band, when it was
last heard from) and its active alarms in clinical words. Beds are ordered by their worst
*unanswered* alarm (priority, then :func:`~monitor.station.words.severity`), then by their
worst answered one, then by name; alarms the same way, unanswered first.

:class:`Changes` turns successive snapshots into what changed, so the page's event stream
sends the whole ward once and then only the beds and vitals that moved.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from monitor.alarms import AlarmEvent, GroupState
from monitor.lifecycle import AlarmEngine
from monitor.pipeline import Processor
from monitor.rules import RULES
from monitor.ruleset import CODES, DEFAULT_RULES, Level, Rule
from monitor.station.words import (
    clinical_units,
    condition,
    describe,
    severity,
    unit_text,
    value_text,
)
from monitor.vitals import METRICS

RANK = {"high": 3, "medium": 2, "low": 1}
_DEFAULT = {r.name: r for r in DEFAULT_RULES}
_NAMES = [m.name for m in METRICS]


def rule_of(engine: AlarmEngine, ev: AlarmEvent) -> tuple[Rule, Level]:
    """The rule and level in force for an active alarm (the default where it was disabled)."""
    key = engine.by_id.get(ev.id)
    name = key[2] if key is not None else CODES.get(ev.code, "")
    rule = engine.rules.for_bed(ev.ward, ev.bed).by_name.get(name) or _DEFAULT.get(name)
    if rule is None:  # an alarm restored from a store written by another version
        rule = Rule(name or ev.code, ev.metric, "system", "", (
            Level(ev.code, ev.priority, ">", ev.threshold or 0.0),), technical=True)
    index = rule.level_index(ev.code)
    level = rule.levels[index] if index is not None else Level(
        ev.code, ev.priority, ">", ev.threshold or 0.0)
    return rule, level


def alarm_view(ev: AlarmEvent, gs: GroupState, rule: Rule, level: Level, *,
               now_text: str = "", mmol: bool = False) -> dict[str, Any]:
    """An active alarm for the page: the wire event, its lifecycle, its words, and
    ``rank``, the page's sort key: unanswered first, then priority, severity, and the one
    waiting longest."""
    d = asdict(ev)
    d.update(latched=gs.latched, escalated=gs.escalated, acked_by=gs.acked_by,
             ack_action=gs.ack_action, snooze_until=gs.snooze_until, since=gs.fired_at,
             words=describe(rule, level, ev.value, mmol=mmol), condition=condition(rule, level),
             technical=rule.technical, severity=severity(rule, level), now_text=now_text)
    d["rank"] = [int(ev.state == "acknowledged"), -RANK[ev.priority], d["severity"],
                 gs.fired_at]
    return d


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def _now_text(processor: Processor, rule: Rule, gs: GroupState, ward: str, bed: str,
              mmol: bool) -> str:
    """The alarm's signal as it is now: the current vital, or the newest sample's detail
    (a stale stream's age is counted by the page)."""
    st = processor.streams
    if rule.source in _NAMES:
        i = st.find(ward, bed, _NAMES.index(rule.source))
        if i is not None:
            if rule.signal == "stale":
                return ""  # the page counts the age from the vital's ``seen``
            return value_text(rule.source, float(st.value[i]), mmol=mmol)
    return clinical_units(gs.detail, mmol)


def ward_snapshot(processor: Processor, *, wards: frozenset[str] | None = None,
                  mmol_wards: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Every bed of ``wards`` (None: all): vitals, active alarms, worst bed first. A
    vital's age is not here: the page counts it from ``seen``, so a bed whose values did
    not change does not change either."""
    st = processor.streams
    engine = processor.alarms
    beds: dict[tuple[str, str], dict[str, Any]] = {}

    def mmol(ward: str) -> bool:
        return ward in mmol_wards or "*" in mmol_wards

    def bed_entry(ward: str, bed: str) -> dict[str, Any]:
        return beds.setdefault((ward, bed), {"ward": ward, "bed": bed, "key": f"{ward}/{bed}",
                                             "vitals": {}, "alarms": [], "priority": None})

    for i, (ward, bed, mid) in enumerate(st.keys):
        if mid >= len(METRICS) or (wards is not None and ward not in wards):
            continue
        m = METRICS[mid]
        value, t = float(st.value[i]), float(st.value_t[i])
        bands = RULES.get(mid)
        band = bands.bands[bands.band_of(value)] if bands is not None and value == value else None
        stale_group = engine.groups.get((ward, bed, f"{m.name}.stale"))
        bed_entry(ward, bed)["vitals"][m.name] = {
            "value": None if math.isnan(value) else value,
            "text": value_text(m.name, value, mmol=mmol(ward)),
            "unit": unit_text(m.name, mmol(ward)),
            "t": None if math.isnan(t) else t,
            "seen": float(st.wall_seen[i]),
            "band": band.code if band else None,
            "band_priority": band.priority if band else None,
            "band_label": _band_label(band.code) if band and band.code else None,
            "stale": stale_group is not None and stale_group.alarm is not None,
        }
    for ev, gs in engine.active():
        if wards is not None and ev.ward not in wards and ev.ward != "_system":
            continue
        rule, level = rule_of(engine, ev)
        entry = bed_entry(ev.ward, ev.bed)
        entry["alarms"].append(alarm_view(
            ev, gs, rule, level, mmol=mmol(ev.ward),
            now_text=_now_text(processor, rule, gs, ev.ward, ev.bed, mmol(ev.ward))))
    return _ordered(beds.values())


def _ordered(beds: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each bed's alarms in order and its rank from them; the beds worst first."""
    beds = list(beds)
    for b in beds:
        b["alarms"].sort(key=lambda a: a["rank"])
        open_ = [a for a in b["alarms"] if a["state"] != "acknowledged" and not a["technical"]]
        worst = open_[0]["rank"] if open_ else None
        b["priority"] = max((a["priority"] for a in b["alarms"]), key=RANK.__getitem__,
                            default=None)
        b["open_priority"] = open_[0]["priority"] if open_ else None
        if worst is not None:  # an unanswered clinical alarm: by priority, then severity
            b["rank"] = [0, worst[1], worst[2]]
        elif b["alarms"]:  # answered or technical only
            b["rank"] = [1, -RANK[b["priority"]], 9]
        else:
            b["rank"] = [2, 0, 9]
    return sorted(beds, key=lambda b: (*b["rank"], b["ward"], _natural(b["bed"])))


def merge_beds(parts: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The beds of several snapshots as one (a bed in more than one of them, such as each
    partition's ``_system`` entry, gets the vitals and alarms of all, each alarm once)."""
    beds: dict[str, dict[str, Any]] = {}
    for part in parts:
        for b in part:
            have = beds.get(b["key"])
            if have is None:
                beds[b["key"]] = {**b, "vitals": dict(b["vitals"]), "alarms": list(b["alarms"])}
            else:  # the same alarm twice (a partition in a hand-over): once
                have["vitals"].update(b["vitals"])
                ids = {a["id"] for a in have["alarms"]}
                have["alarms"].extend(a for a in b["alarms"] if a["id"] not in ids)
    return _ordered(beds.values())


def _band_label(code: str) -> str:
    """A band in a tile: "NEWS2 3" only for NEWS2 bands; glucose levels in their words."""
    parts = code.split(".")
    if parts[1] == "news2":
        return f"NEWS2 {parts[2]}"
    if parts[0] == "glucose":
        return f"{'hypo' if parts[1] == 'low' else 'hyper'} L{parts[2][1:]}"
    if code == "map.low":
        return "MAP < 65"
    return parts[-1]


def bed_order(beds: list[dict[str, Any]]) -> list[str]:
    return [b["key"] for b in beds]


class Changes:
    """What changed since the last snapshot sent on one stream."""

    def __init__(self) -> None:
        self.beds: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []

    def first(self, beds: list[dict[str, Any]]) -> dict[str, Any]:
        self.beds = {b["key"]: b for b in beds}
        self.order = bed_order(beds)
        return {"beds": beds, "order": self.order}

    def next(self, beds: list[dict[str, Any]]) -> dict[str, Any] | None:
        """A delta, or None when nothing a person could see changed."""
        out: list[dict[str, Any]] = []
        current = {b["key"]: b for b in beds}
        for key, b in current.items():
            old = self.beds.get(key)
            if old is None:
                out.append(b)
                continue
            delta: dict[str, Any] = {}
            vit = {m: v for m, v in b["vitals"].items() if v != old["vitals"].get(m)}
            if vit:
                delta["vitals"] = vit
            for field in ("alarms", "priority", "open_priority", "rank"):
                if b[field] != old[field]:
                    delta[field] = b[field]
            if delta:
                delta["key"] = key
                out.append(delta)
        gone = [k for k in self.beds if k not in current]
        order = bed_order(beds)
        self.beds = current
        if not out and not gone and order == self.order:
            return None
        msg: dict[str, Any] = {"beds": out}
        if gone:
            msg["gone"] = gone
        if order != self.order:
            msg["order"] = order
            self.order = order
        return msg


__all__ = ["Changes", "alarm_view", "merge_beds", "rule_of", "ward_snapshot"]
