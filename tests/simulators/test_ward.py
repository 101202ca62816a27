"""The demo ward: seeded, physiologically coupled, and on the wire contract."""

from __future__ import annotations

import itertools

import orjson
import pytest

from monitor.wire import decode
from simulators.ward import make_ward, observations


def _take(seed: int, n: int) -> list[tuple[float, str, list[dict[str, object]]]]:
    ward = make_ward(8, seed=seed)
    return [(t, b.bed, o) for t, b, o in itertools.islice(observations(ward, start=1e9,
                                                                         seed=seed), n)]


def test_same_seed_same_stream() -> None:
    assert _take(3, 500) == _take(3, 500)
    assert _take(3, 500) != _take(4, 500)


def test_observations_pass_the_decoder_and_map_is_coupled() -> None:
    for t, bed, obs in _take(1, 200):
        d = decode(f"wardwatch/v1/obs/4A/{bed}", orjson.dumps({"obs": obs}), t)
        assert d.rejections == []
        vals = {o["metric"]: o["v"] for o in obs}
        if "map" in vals:
            sbp, dbp, mean = (float(vals[k]) for k in ("sbp", "dbp", "map"))
            assert mean == pytest.approx(dbp + (sbp - dbp) / 3, abs=1.5)


def test_every_storyline_is_under_way_within_the_demos_first_ten_seconds() -> None:
    """At the demo's default 30x, 10 s are EARLY_S simulated: each storyline has moved its
    vital clearly away from the bed's baseline by then (noise-free comparison: same draws)."""
    import numpy as np

    from simulators.ward import EARLY_S, STORYLINES, vitals_at

    for bed in make_ward(len(STORYLINES)):
        if bed.storyline in ("stable", "artifacts"):
            continue
        at0 = vitals_at(bed, 0.0, np.random.default_rng(0))
        later = vitals_at(bed, EARLY_S, np.random.default_rng(0))
        moved = max(abs(later[m] - at0[m]) for m in ("hr", "sbp", "glucose"))
        assert moved >= 5, (bed.storyline, moved)
