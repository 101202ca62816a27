"""Alarm state against the configuration in force: what no rule raises any more ends.

Rules change with the configuration file (a restart) and with admissions (which end
the bed's alarms themselves). An alarm of a rule or level that was disabled or removed,
or of a ward that is gone from the rules, would otherwise stay active for ever: no
sample feeds a rule that is not in force. The daemon calls :func:`reconcile` at start-up.
"""

from __future__ import annotations

from monitor.alarms import AlarmEvent
from monitor.lifecycle import SYSTEM_WARD, AlarmEngine, GroupKey


def reconcile(engine: AlarmEngine, clock: float) -> list[AlarmEvent]:
    """Resolve alarms, and drop pending conditions, of rules no longer in force."""
    events: list[AlarmEvent] = []
    for key in list(engine.groups):
        why = out_of_force(engine, key)
        if why is not None:
            events += engine.retire(key, clock, why)
    return events


def out_of_force(engine: AlarmEngine, key: GroupKey) -> str | None:
    """Why the (bed, rule) machine ``key`` no longer applies, or None."""
    ward, bed, name = key
    rules = engine.rules.default if ward == SYSTEM_WARD else engine.rules.for_bed(ward, bed)
    rule = rules.by_name.get(name)
    if rule is None:
        return f"rule {name} is no longer in force for this bed (configuration changed)"
    alarm = engine.groups[key].alarm
    if alarm is not None and alarm.code not in {lv.code for lv in rule.levels if lv.on}:
        return f"level {alarm.code} is disabled (configuration changed)"
    return None
