"""The station's words for alarms: every rule has them, and they never contradict."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.ruleset import DEFAULT_RULES, Level, Rule
from monitor.station.words import describe, severity, shown, unit_text

PAIRS = [(r, lv) for r in DEFAULT_RULES for lv in r.levels]


def test_every_rule_and_level_has_words_units_and_news2_only_where_it_is_news2() -> None:
    assert len(PAIRS) > 30
    for rule, lv in PAIRS:
        for mmol in (False, True):
            value = lv.threshold + (1 if lv.op in (">", ">=") else -1)
            text = describe(rule, lv, value, mmol=mmol)
            assert text and not text[0].islower(), (lv.code, text)
            assert "mm[Hg]" not in text and "_" not in text.split(":")[0], (lv.code, text)
            assert ("NEWS2" in text) == ("news2" in lv.code), (lv.code, text)
            assert lv.code not in text  # words, not codes
            if (rule.source or rule.metric) == "glucose" and rule.signal == "value":
                assert ("mmol/L" in text) == mmol and ("mg/dL" in text) != mmol
        assert severity(rule, lv) in range(5)


def test_what_a_nurse_reads() -> None:
    by_code = {(r.name, lv.code): (r, lv) for r, lv in PAIRS}
    assert describe(*by_code["hr.low", "hr.extreme.low"], 29) == \
        "Extreme bradycardia 29 /min (limit < 30 /min)"
    assert describe(*by_code["hr.high", "hr.news2.3"], 130.4) == \
        "Tachycardia 130.4 /min (NEWS2 pulse 3; limit > 130 /min)"
    assert describe(*by_code["sbp.low", "sbp.news2.3"], 87) == \
        "Low systolic BP 87 mmHg (NEWS2 systolic BP 3; limit ≤ 90 mmHg)"
    # held by hysteresis: below the limit but not cleared, and the words say so
    assert describe(*by_code["shock_index", "shock_index.high"], 0.97) == \
        "Shock index high 0.97 (limit ≥ 1.00, clears below 0.90)"
    assert describe(*by_code["news2", "news2.urgent"], 4) == \
        "NEWS2 partial score: urgent response 4 (limit ≥ 5, clears below 4)"
    assert describe(*by_code["glucose.low", "glucose.low.l2"], 50, mmol=True) == \
        "Hypoglycaemia, level 2 2.8 mmol/L (limit < 3.0 mmol/L)"
    assert describe(*by_code["hr.stale", "hr.stale"], 75) == \
        "No heart rate data for 75 s (limit > 60 s)"
    assert unit_text("sbp") == "mmHg"


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([(r, lv) for r, lv in PAIRS if r.signal in ("value", "stale")]),
       st.integers(-500, 500), st.booleans())
def test_a_value_shown_against_its_limit_compares_as_the_real_one(
        pair: tuple[Rule, Level], hundredths: int, mmol: bool) -> None:
    rule, lv = pair
    x = round(lv.threshold + hundredths / 100, 2)  # events carry two decimals
    text = describe(rule, lv, x, mmol=mmol)
    # "<words> <value> <unit> (...limit <op> <limit> <unit>...)"
    m = re.search(r" (-?\d+(?:\.\d+)?) \S+ \((?:[^;]*; )?limit (\S+) (-?\d+(?:\.\d+)?)", text)
    assert m, text
    val, op, limit = float(m[1]), m[2], float(m[3])
    ops = {">": ">", "≥": ">=", "<": "<", "≤": "<="}
    assert Level("", "", ops[op], limit).enters(val) == lv.enters(x), text
    if not lv.enters(x) and lv.hysteresis and not lv.exits(x):
        assert "clears" in text


def test_shown_takes_the_fewest_decimals_that_keep_the_comparison() -> None:
    assert shown(130.4, ">", 130) == ("130.4", "130")
    assert shown(131.0, ">", 130) == ("131", "130")
    assert shown(130.04, ">", 130) == ("130.04", "130")
    assert shown(29.6, "<", 30) == ("29.6", "30")
    assert shown(181, ">", 180, 1 / 18.0156, 1) == ("10.05", "9.99")  # both are 10.0
