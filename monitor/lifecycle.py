"""The alarm lifecycle: one state machine per (bed, rule), fed by scored samples and timers.

States of a rule's alarm, and what moves them::

    idle ─condition held for the level's delay─► firing ─ack─► acknowledged
      ▲                                            │  ▲            │   │ snooze ended,
      │                                  unacked   │  └────────────┘   │ condition persists
      │                              escalate_*_s  ▼                   │
      └──────── condition cleared (past hysteresis) ◄── escalated ─────┘

* A condition's *onset* is the observation time since which it has held; the alarm
  fires once ``t - onset >= delay_s``. The most severe level that qualifies wins: a
  milder alarm of the same rule resolves as superseded, and comes back (at once, its
  delay long served) when the severe one clears.
* A cleared condition resolves the alarm, except a clinical **high** priority alarm
  that nobody acknowledged: it **latches** until acknowledged.
* **Acknowledge** silences the alarm while the condition lasts (a high one re-arms after
  ``ack_rearm_high_s``); **snooze** silences it for ``snooze_s``, after which it fires
  again if the condition is still there. Acks and snoozes are per alarm, so a snoozed
  low alarm never holds back another rule's alarm, whatever its priority.
* A firing alarm not acknowledged within ``escalate_<priority>_s`` escalates once
  (to ``escalate_to``), published as an ``escalated`` event.

Observation time drives conditions and delays; the *clock* drives acks, snoozes,
escalation and stale-data checks. Live, the clock is the wall clock; a replay passes
observation time as the clock, so whole days replay in seconds with the same result.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from monitor.alarms import AckError, AckResult, AlarmEvent, AuditEntry, GroupState, alarm_id
from monitor.config import AlarmSettings
from monitor.errors import ConfigError
from monitor.ruleset import (
    Level,
    Rule,
    RuleSet,
    parse_overrides,
)
from monitor.scoring import (
    ScoredBatch,
    StreamTable,
)
from monitor.signals import Signals

log = logging.getLogger(__name__)

GroupKey = tuple[str, str, str]  # ward, bed, rule name
BedKey = tuple[str, str]

SYSTEM_WARD = "_system"  # ward of the pipeline's own alarms (not a valid ward name on the wire)

class AlarmEngine:
    """Every (bed, rule) state machine, fed by scored batches, acks and a clock tick.

    ``store`` (see :mod:`monitor.alarmstore`) makes active alarms, acks, snoozes and
    escalations survive a restart; without one the engine lives in memory (offline
    scoring, evaluation).
    """

    def __init__(self, rules: RuleSet | None = None, settings: AlarmSettings | None = None,
                 *, store: Any = None, system_bed: str = "wardwatch",
                 on_fire: Callable[[AlarmEvent], None] | None = None,
                 ack_after: float = 0.0) -> None:
        self.rules = rules if rules is not None else RuleSet()
        # Replays only (score, evaluate): a modelled responder acknowledges every alarm
        # this long (clock seconds) after it fires or sounds again, as a nurse would, so a
        # latched or acknowledged alarm never hides the next episode. 0: nobody answers.
        self.ack_after = ack_after
        self.cfg = settings if settings is not None else AlarmSettings()
        self.system_bed = system_bed
        self.groups: dict[GroupKey, GroupState] = {}  # non-idle machines only
        self.by_id: dict[str, GroupKey] = {}
        self.hot: Counter[BedKey] = Counter()  # non-idle machines per bed
        self.admissions: dict[BedKey, dict[str, Any]] = {}
        self.audit: list[AuditEntry] = []  # not yet persisted
        self.dirty: set[GroupKey] = set()
        self.on_fire = on_fire
        # (stage, ward, bed, error, what): exceptions caught per bed, for the caller to
        # count and dead-letter; the other beds went on
        self.faults: list[tuple[str, str, str, str, str]] = []
        self.signals = Signals(self)
        self.store = store
        if store is not None:
            self._load(store)

    # -- persistence ---------------------------------------------------------------
    def _load(self, store: Any) -> None:
        for (ward, bed), adm in store.admissions().items():
            try:
                self.rules.set_patient(ward, bed, parse_overrides(adm["rules"], "admission"))
            except ConfigError as exc:
                log.error("admission of %s/%s no longer valid, using ward rules: %s",
                          ward, bed, exc)
            self.admissions[(ward, bed)] = adm
        for key, raw in store.groups().items():
            gs = GroupState.from_json(raw)
            if gs.idle:
                continue
            self.groups[key] = gs
            self.hot[key[:2]] += 1
            if gs.alarm is not None:
                self.by_id[gs.alarm.id] = key
        log.info("alarm state restored: %d active alarms, %d pending conditions",
                 len(self.by_id), len(self.groups) - len(self.by_id))

    def flush(self, events: Sequence[AlarmEvent] = ()) -> None:
        """Persist what changed since the last flush and the events it made: one
        transaction, so an event is published (by the store's outbox) iff its state
        change was kept."""
        if self.store is None:
            self.audit.clear()
            self.dirty.clear()
            return
        if not self.dirty and not self.audit and not events:
            return
        changed = {k: (None if (g := self.groups.get(k)) is None else g.to_json())
                   for k in self.dirty}
        self.store.save(changed, self.audit,
                        [(ev.topic, ev.to_json().decode()) for ev in events])
        self.audit.clear()
        self.dirty.clear()

    def fault(self, stage: str, ward: str, bed: str, exc: BaseException, what: str) -> None:
        """A bug met on one bed: logged with its traceback, kept for the caller."""
        log.error("internal error in %s on %s/%s (%s); that bed's input is dead-lettered, "
                  "the others go on", stage, ward, bed, what, exc_info=exc)
        self.faults.append((stage, ward, bed, f"{type(exc).__name__}: {exc}"[:500], what))

    # -- the state machine ---------------------------------------------------------
    def _state(self, key: GroupKey) -> GroupState:
        gs = self.groups.get(key)
        if gs is None:
            gs = self.groups[key] = GroupState()
            self.hot[key[:2]] += 1
        return gs

    def _drop_if_idle(self, key: GroupKey, gs: GroupState) -> None:
        if gs.idle and self.groups.get(key) is gs:
            del self.groups[key]
            self.hot[key[:2]] -= 1
            if self.hot[key[:2]] <= 0:
                del self.hot[key[:2]]

    def feed(self, key: GroupKey, rule: Rule, t: float, x: float, clock: float,
             value: float, forecast: float | None, detail: str) -> list[AlarmEvent]:
        """One observation of a rule's signal ``x`` at observation time ``t``."""
        gs = self.groups.get(key)
        levels = rule.levels
        if gs is None:
            if not any(lv.enters(x) for lv in levels):
                return []
            gs = self._state(key)
        if t < gs.last_t:
            return []
        events: list[AlarmEvent] = []
        if self.ack_after > 0:
            events += self._respond(key, gs, clock)
            if key not in self.groups:  # the ack resolved a latched alarm: keep judging
                self.groups[key] = gs
                self.hot[key[:2]] += 1
        gs.last_t = t
        gs.detail = detail
        onset = gs.onset
        before = dict(onset)
        for lv in levels:
            on = onset.get(lv.code)
            if on is None:
                if lv.enters(x):
                    onset[lv.code] = t
            elif lv.exits(x):
                del onset[lv.code]
        if onset != before:
            self.dirty.add(key)
        events += self._settle(key, rule, gs, t, clock, value, forecast)
        events += self._timers(key, gs, clock)
        self._drop_if_idle(key, gs)
        return events

    def _respond(self, key: GroupKey, gs: GroupState, clock: float) -> list[AlarmEvent]:
        """The modelled responder: an alarm sounding for ``ack_after`` by ``clock`` is
        acknowledged then (at that clock), before the sample at ``clock`` is judged."""
        a = gs.alarm
        if a is None or a.state not in ("firing", "escalated"):
            return []
        at = gs.fired_at + self.ack_after
        if clock < at:
            return []
        result = self.ack(key[0], key[1], {"id": a.id, "by": "responder", "action": "ack",
                                           "reason": "modelled responder (replay)"}, at)
        return result.events

    @staticmethod
    def _target(rule: Rule, gs: GroupState, t: float) -> int | None:
        for i in range(len(rule.levels) - 1, -1, -1):
            lv = rule.levels[i]
            on = gs.onset.get(lv.code)
            if on is not None and t - on >= lv.delay_s:
                return i
        return None

    def _settle(self, key: GroupKey, rule: Rule, gs: GroupState, t: float, clock: float,
                value: float, forecast: float | None) -> list[AlarmEvent]:
        target = self._target(rule, gs, t)
        a = gs.alarm
        cur = None if a is None else rule.level_index(a.code)
        events: list[AlarmEvent] = []
        if a is not None and cur is None:  # its level was disabled (admission)
            events.append(self._resolve(key, gs, t, clock, value, "rule disabled"))
            a = None
        if target is not None and (a is None or cur is None or target > cur):
            if a is not None:
                events.append(self._resolve(key, gs, t, clock, value,
                                            f"superseded by {rule.levels[target].code}"))
            events.append(self._fire(key, rule, rule.levels[target], t, clock, value, forecast))
        elif a is not None and cur is not None and (target is None or target < cur):
            if (a.priority == "high" and not rule.technical and a.state != "acknowledged"):
                if not gs.latched:
                    gs.latched = True
                    self.dirty.add(key)
                    if not gs.latch_logged:  # a value hovering at its limit latches
                        gs.latch_logged = True  # again and again: one audit line per alarm
                        self._audit(clock, a, "latched", "wardwatch",
                                    "condition cleared; latched until acknowledged")
            else:
                events.append(self._resolve(key, gs, t, clock, value, "condition cleared"))
                if target is not None:
                    events.append(self._fire(key, rule, rule.levels[target], t, clock, value,
                                             forecast))
        elif a is not None and gs.latched and target == cur:
            gs.latched = False  # the condition is back: an ordinary alarm again
            self.dirty.add(key)
        return events

    def _fire(self, key: GroupKey, rule: Rule, lv: Level, t: float, clock: float,
              value: float, forecast: float | None) -> AlarmEvent:
        ward, bed, _ = key
        gs = self.groups[key]
        ev = AlarmEvent(
            id=alarm_id(ward, bed, lv.code, t),
            ward=ward,
            bed=bed,
            metric=rule.metric,
            code=lv.code,
            priority=lv.priority,
            state="firing",
            t=t,
            value=_round(value),
            threshold=lv.threshold,
            forecast=forecast,
            message=f"{gs.detail}: {lv.text}" if gs.detail else lv.text,
        )
        gs.alarm = ev
        gs.fired_at = clock
        gs.snooze_until = None
        gs.acked_by = None
        gs.latched = False
        gs.latch_logged = False
        gs.escalated = False
        self.by_id[ev.id] = key
        self.dirty.add(key)
        self._audit(clock, ev, "firing", "wardwatch", ev.message)
        if self.on_fire is not None:
            self.on_fire(ev)
        return ev

    def _resolve(self, key: GroupKey, gs: GroupState, t: float, clock: float, value: float,
                 why: str) -> AlarmEvent:
        a = gs.alarm
        assert a is not None
        now = f" ({gs.detail})" if gs.detail else ""
        ev = replace(a, state="resolved", t=t, value=_round(value),
                     message=f"{_base(a.message)} — resolved: {why}{now}")
        gs.alarm = None
        gs.latched = False
        gs.snooze_until = None
        self.by_id.pop(a.id, None)
        self.dirty.add(key)
        self._audit(clock, ev, "resolved", "wardwatch", why)
        return ev

    def _timers(self, key: GroupKey, gs: GroupState, clock: float) -> list[AlarmEvent]:
        a = gs.alarm
        if a is None:
            return []
        if a.state == "acknowledged":
            if gs.snooze_until is not None and clock >= gs.snooze_until:
                gs.snooze_until = None
                gs.acked_by = None
                gs.fired_at = clock
                gs.escalated = False
                ev = replace(a, state="firing", t=clock,
                             message=f"{_base(a.message)} — sounding again: condition persists")
                gs.alarm = ev
                self.dirty.add(key)
                self._audit(clock, ev, "sounded_again", "wardwatch", "snooze ended")
                return [ev]
            return []
        after = self.cfg.escalate_after(a.priority)
        if a.state == "firing" and after > 0 and clock - gs.fired_at >= after:
            gs.escalated = True
            waited = clock - gs.fired_at
            ev = replace(a, state="escalated", t=clock,
                         message=f"{_base(a.message)} — escalated to {self.cfg.escalate_to}: "
                                 f"unacknowledged for {waited / 60:.0f} min")
            gs.alarm = ev
            self.dirty.add(key)
            self._audit(clock, ev, "escalated", "wardwatch", f"to {self.cfg.escalate_to}")
            return [ev]
        return []

    def _audit(self, clock: float, ev: AlarmEvent, action: str, by: str, detail: str,
               client: str = "") -> None:
        self.audit.append(AuditEntry(clock, ev.ward, ev.bed, ev.id, ev.code, ev.priority, action,
                                     by, detail, client, ev.t))

    # -- inputs -----------------------------------------------------------------------
    def update(self, batch: ScoredBatch, streams: StreamTable,
               clock: float | None = None) -> list[tuple[int, AlarmEvent]]:
        """(row in ``batch``, event) for every change ``batch`` causes, in time order.

        ``clock`` None: a replay, where observation time is the clock.
        """
        return self.signals.update(batch, streams, clock)

    def tick(self, clock: float, streams: StreamTable | None = None,
             system: Mapping[str, float] | None = None) -> list[AlarmEvent]:
        """Timers (escalation, snooze end), stale streams and the pipeline self-check."""
        events: list[AlarmEvent] = []
        for key, gs in list(self.groups.items()):
            if gs.alarm is not None:
                try:
                    events += self._timers(key, gs, clock)
                except Exception as exc:
                    self.fault("clock", key[0], key[1], exc, f"timers of {key[2]}")
        if streams is not None:
            events += self.signals.stale(clock, streams)
        for source, x in (system or {}).items():
            br = self.rules.default
            for rule in br.get("system", source):
                key = (SYSTEM_WARD, self.system_bed, rule.name)
                events += self.feed(key, rule, clock, x, clock, x, None, f"{x:g}")
        return events

    # -- commands from people and devices ------------------------------------------
    def ack(self, ward: str, bed: str, request: Mapping[str, Any], clock: float, *,
            client: str = "", refuse: str = "") -> AckResult:
        """Acknowledge or snooze one alarm (MQTT ``wardwatch/v1/ack/...`` or the station).

        ``client``: the sender as authenticated outside the message (see
        :class:`~monitor.alarms.AuditEntry`), audited next to ``by``. ``refuse``: why the
        sender may not ack (an untrusted client): audited as rejected, nothing changes.
        """
        by = str(request.get("by", ""))
        aid = str(request.get("id", ""))
        reason = str(request.get("reason", ""))
        try:
            if refuse:
                raise AckError(refuse)
            key = self.by_id.get(aid)
            if key is None or key[:2] != (ward, bed):
                raise AckError(f"no active alarm {aid!r} on {ward}/{bed}")
            gs = self.groups[key]
            a = gs.alarm
            assert a is not None
            action = request.get("action")
            if action == "snooze":
                raw = request.get("snooze_s", self.cfg.snooze_default_s)
                if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw > 0:
                    raise AckError(f"snooze_s must be a positive number, got {raw!r}")
                secs = min(float(raw), self.cfg.snooze_max_s)
                until: float | None = clock + secs
                what, extra = f"snoozed {secs / 60:g} min", ""
            elif action == "ack":
                rearm = self.cfg.ack_rearm_high_s if a.priority == "high" else 0.0
                until = clock + rearm if rearm > 0 else None
                what = "acknowledged"
                extra = f", sounds again in {rearm / 60:g} min if it persists" if until else ""
            else:
                raise AckError(f"action must be 'ack' or 'snooze', got {action!r}")
        except AckError as exc:
            self.audit.append(AuditEntry(clock, ward, bed, aid, "", "", "rejected", by,
                                         f"{exc}; {reason}".rstrip("; "), client))
            return AckResult([], str(exc))
        gs.snooze_until = until
        gs.acked_by = by
        gs.ack_action = str(action)
        ev = replace(a, state="acknowledged", t=clock,
                     message=f"{_base(a.message)} — {what} by {by}{extra}"
                             + (f": {reason}" if reason else ""))
        gs.alarm = ev
        self.dirty.add(key)
        self._audit(clock, ev, "snoozed" if action == "snooze" else "acknowledged", by,
                    f"{what}{extra}; {reason}".rstrip("; "), client)
        events = [ev]
        if gs.latched:  # the condition had already cleared
            rule = self.rules.for_bed(ward, bed).by_name.get(key[2])
            events.append(self._resolve(key, gs, clock, clock, ev.value,
                                        "acknowledged after the condition cleared"))
            target = None if rule is None else self._target(rule, gs, gs.last_t)
            if rule is not None and target is not None:
                events.append(self._fire(key, rule, rule.levels[target], gs.last_t, clock,
                                         ev.value, None))
            self._drop_if_idle(key, gs)
        return AckResult(events)

    def device_status(self, ward: str, bed: str, online: bool, clock: float) -> list[AlarmEvent]:
        """A device's presence message (``online``, or its MQTT last will ``offline``)."""
        (rule,) = self.rules.for_bed(ward, bed).get("offline") or (None,)
        if rule is None:
            return []
        key = (ward, bed, rule.name)
        gs = self.groups.get(key)
        t = clock if gs is None else max(clock, gs.last_t)
        return self.feed(key, rule, t, 0.0 if online else 1.0, clock, 0.0 if online else 1.0,
                         None, "device online" if online else "device offline")

    def admit(self, ward: str, bed: str, patient: str, rules: Mapping[str, Any],
              clock: float) -> list[AlarmEvent]:
        """A new admission: the patient's rule overrides replace the previous patient's."""
        overrides = parse_overrides(rules, f"admission {ward}/{bed}")  # ConfigError if bad
        events = self._end_alarms(ward, bed, clock, "new admission")
        self.rules.set_patient(ward, bed, overrides)
        self.signals.forget(ward, bed, clock)
        adm = {"patient": patient, "rules": dict(rules), "admitted": clock}
        self.admissions[(ward, bed)] = adm
        self.audit.append(AuditEntry(clock, ward, bed, "", "", "", "admitted", "admission",
                                     f"patient {patient or '—'}; overrides {sorted(rules)}"))
        if self.store is not None:
            self.store.set_admission(ward, bed, adm)
        return events

    def discharge(self, ward: str, bed: str, clock: float) -> list[AlarmEvent]:
        """The bed is empty: its alarms resolve and its streams are no longer expected."""
        events = self._end_alarms(ward, bed, clock, "patient discharged")
        self.rules.set_patient(ward, bed, None)
        self.admissions.pop((ward, bed), None)
        self.signals.forget(ward, bed, clock)
        self.audit.append(AuditEntry(clock, ward, bed, "", "", "", "discharged", "admission",
                                     ""))
        if self.store is not None:
            self.store.set_admission(ward, bed, None)
        return events

    def retire(self, key: GroupKey, clock: float, why: str) -> list[AlarmEvent]:
        """End one (bed, rule) machine whose rule is no longer in force."""
        gs = self.groups.get(key)
        if gs is None:
            return []
        events = []
        if gs.alarm is not None:
            events.append(self._resolve(key, gs, max(clock, gs.last_t), clock, gs.alarm.value,
                                        why))
        gs.onset.clear()
        self.dirty.add(key)
        self._drop_if_idle(key, gs)
        return events

    def _end_alarms(self, ward: str, bed: str, clock: float, why: str) -> list[AlarmEvent]:
        events = []
        for key in [k for k in self.groups if k[:2] == (ward, bed)]:
            events += self.retire(key, clock, why)
        return events

    # -- views ---------------------------------------------------------------------
    def active(self) -> list[tuple[AlarmEvent, GroupState]]:
        # list() copies in one C call: safe against the event loop changing the dict
        # while the metrics thread (counts) reads it
        return [(a, gs) for gs in list(self.groups.values()) if (a := gs.alarm) is not None]

    def counts(self) -> Counter[tuple[str, str]]:
        """Active alarms by (ward, priority); called from the /metrics thread."""
        return Counter((a.ward, a.priority) for a, _ in self.active())


def _round(x: float) -> float:
    return round(x, 2) if x == x else x


def _base(message: str) -> str:
    """The message without what earlier lifecycle steps appended to it."""
    return message.split(" — ", 1)[0]
