"""Waits between attempts at something that is down, and which failures get a log line."""

from __future__ import annotations

from monitor.mqtt import RECONNECT_MAX_S
from monitor.retry import Retry


def test_waits_double_to_the_bound_and_a_long_outage_logs_once_a_minute() -> None:
    now = [0.0]
    retry = Retry(most=RECONNECT_MAX_S, clock=lambda: now[0])
    waits, logged = [], []
    for _ in range(41):  # ~3 minutes of failures, most at the bound
        unlogged = retry.failed()
        waits.append(retry.wait)
        logged.append((now[0], unlogged))
        now[0] += retry.wait
    assert waits[:5] == [0.5, 1.0, 2.0, 4.0, RECONNECT_MAX_S]
    assert set(waits[4:]) == {RECONNECT_MAX_S}
    lines = [(t, n) for t, n in logged if n is not None]
    # every failure while the wait grew, then the first at the bound, then one a minute,
    # each saying how many went unlogged since the line before
    assert [t for t, _ in lines] == [0.0, 0.5, 1.5, 3.5, 7.5, 67.5, 127.5, 187.5]
    assert [n for _, n in lines] == [0, 0, 0, 0, 0, 11, 11, 11]
    assert sum(1 for _, n in logged if n is None) == 41 - len(lines)


def test_success_starts_over() -> None:
    now = [0.0]
    retry = Retry(most=RECONNECT_MAX_S, clock=lambda: now[0])
    for _ in range(10):
        retry.failed()
        now[0] += retry.wait
    assert retry.down_s() == now[0]  # down since the first failure, at 0
    assert retry.succeeded() == now[0]  # how long it was down
    assert retry.down_s() == 0.0 and retry.succeeded() is None  # up: nothing to say
    assert retry.wait == 0.0
    assert retry.failed() == 0 and retry.wait == 0.5  # logged again, from the first wait
