"""Merging what several daemons show (a cluster worker's partitions, other workers)."""

from __future__ import annotations

from typing import Any

from monitor.station.view import merge_beds


def _alarm(aid: str, priority: str, state: str = "firing") -> dict[str, Any]:
    rank = {"high": -3, "medium": -2, "low": -1}[priority]
    return {"id": aid, "priority": priority, "state": state, "technical": False,
            "rank": [int(state == "acknowledged"), rank, 1.0, 0.0]}


def _bed(ward: str, bed: str, *alarms: dict[str, Any], hr: float = 80.0) -> dict[str, Any]:
    return {"ward": ward, "bed": bed, "key": f"{ward}/{bed}", "alarms": list(alarms),
            "vitals": {"hr": {"value": hr}}, "priority": None}


def test_beds_of_several_sources_merge_worst_first_each_alarm_once() -> None:
    one = [_bed("4A", "2"), _bed("_system", "wardwatch", _alarm("s1", "medium"))]
    two = [_bed("4A", "10", _alarm("a1", "high")), _bed("4A", "3", _alarm("a2", "medium")),
           _bed("_system", "wardwatch", _alarm("s1", "medium"), _alarm("s2", "low"))]
    merged = merge_beds([one, two])
    assert [b["key"] for b in merged] == ["4A/10", "4A/3", "_system/wardwatch", "4A/2"]
    system = merged[2]
    assert [a["id"] for a in system["alarms"]] == ["s1", "s2"]  # s1 once, worst first
    assert merged[0]["priority"] == "high" and merged[3]["rank"] == [2, 0, 9]
