"""NEWS2 and ADA bands at and around every edge."""

from __future__ import annotations

import pytest

from monitor.rules import ADA_GLUCOSE, NEWS2_PULSE, NEWS2_SBP, BandRule


def code(rule: BandRule, v: float) -> str | None:
    return rule.bands[rule.band_of(v)].code


@pytest.mark.parametrize(
    ("hr", "expected"),
    [(30, "hr.news2.3"), (40, "hr.news2.3"), (41, "hr.news2.1"), (50, "hr.news2.1"),
     (51, None), (90, None), (91, "hr.news2.1"), (110, "hr.news2.1"), (111, "hr.news2.2"),
     (130, "hr.news2.2"), (131, "hr.news2.3"), (140, "hr.news2.3")],
)
def test_news2_pulse_bands(hr: float, expected: str | None) -> None:
    assert code(NEWS2_PULSE, hr) == expected


@pytest.mark.parametrize(
    ("sbp", "expected"),
    [(70, "sbp.news2.3"), (90, "sbp.news2.3"), (91, "sbp.news2.2"), (100, "sbp.news2.2"),
     (101, "sbp.news2.1"), (110, "sbp.news2.1"), (111, None), (219, None),
     (220, "sbp.news2.3"), (250, "sbp.news2.3")],
)
def test_news2_sbp_bands(sbp: float, expected: str | None) -> None:
    assert code(NEWS2_SBP, sbp) == expected


@pytest.mark.parametrize(
    ("glucose", "expected"),
    [(40, "glucose.low.l2"), (53.9, "glucose.low.l2"), (54, "glucose.low.l1"),
     (69, "glucose.low.l1"), (69.9, "glucose.low.l1"), (70, None), (180, None),
     (180.5, "glucose.high.l1"), (250, "glucose.high.l1"), (251, "glucose.high.l2")],
)
def test_ada_glucose_levels(glucose: float, expected: str | None) -> None:
    assert code(ADA_GLUCOSE, glucose) == expected


def test_priorities_follow_subscore() -> None:
    assert NEWS2_PULSE.bands[NEWS2_PULSE.band_of(140)].priority == "high"
    assert NEWS2_PULSE.bands[NEWS2_PULSE.band_of(120)].priority == "medium"
    assert NEWS2_PULSE.bands[NEWS2_PULSE.band_of(100)].priority == "low"
    assert ADA_GLUCOSE.bands[ADA_GLUCOSE.band_of(50)].priority == "high"


def test_the_readme_rule_table_is_the_rule_set() -> None:
    from pathlib import Path

    from monitor.ruleset import DEFAULT_RULES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Rule set", 1)[1].split("\n\n* ", 1)[0]
    documented = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0].startswith("`"):
            code, rule = cells[0].strip("`"), cells[1].strip("`")
            documented.add((rule.replace("{metric}", "hr"), code.replace("{metric}", "hr"),
                            cells[3], float(cells[4]), float(cells[5]), cells[6] == "on"))
    actual = {(r.name, lv.code, lv.priority, lv.delay_s, lv.hysteresis, lv.on)
              for r in DEFAULT_RULES for lv in r.levels
              if r.signal not in ("stale", "flat") or r.source == "hr"}
    assert documented == actual
