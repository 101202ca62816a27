"""A loopback cluster (deploy/cluster/): three NATS nodes, workers joining and dying.

Beds publish heart rate to the cluster while a third worker joins (partitions move to
it by hand-over) and then the first is SIGKILLed (its partitions are taken over from
their last committed state). In the end, every stream's model state in the cluster's
key-value store must be, bit for bit, what one scorer that never stopped makes of the
same samples: each observation was scored exactly once, none lost, none twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from monitor.cluster import Entry, assignment
from monitor.metrics import Metrics
from monitor.pipeline import Processor
from monitor.scoring import _layout as L
from monitor.vitals import METRIC_IDS
from tests.cluster.helpers import (
    BEDS,
    PARTITIONS,
    Client,
    Cluster,
    bucket,
    committed,
    entries,
    free_port,
    payload,
)
from tests.edge.devices import MllpClient, listening, oru, spawn_bridge
from tests.monitor.helpers import eventually

ROUNDS = 240
STEP_S = 5.0


async def non_leader(cluster: Cluster, js_nodes: list[Any]) -> Any:
    """A node that leads neither the intake stream nor the state bucket: losing the
    stream's leader loses what devices publish until a new one is elected, PUBACK or
    not (measured: README "A cluster"), which is NATS's, not something a worker can
    recover; this is the loss wardwatch must survive."""
    import nats

    nc = await nats.connect(servers=cluster.nats_urls)
    try:
        js = nc.jetstream()
        leaders = {(await js.stream_info("WARDWATCH_IN")).cluster.leader,
                   (await js.stream_info("KV_wardwatch")).cluster.leader}
    finally:
        await nc.close()
    return next(n for n in js_nodes if n.name not in leaders)


TACHYCARDIC = {bed for i, bed in enumerate(BEDS) if i % 2 == 0}


def samples(seed: int) -> dict[tuple[str, str], np.ndarray]:
    """Each bed's HR: a wandering baseline, and a tachycardic stretch in some beds."""
    rng = np.random.default_rng(seed)
    out = {}
    for bed in BEDS:
        hr = 78 + np.cumsum(rng.normal(0, 0.6, ROUNDS)) + rng.normal(0, 2, ROUNDS)
        if bed in TACHYCARDIC:
            hr[120:170] += 60
        out[bed] = np.clip(hr, 35, 200).round(1)
    return out


def reference(hr: dict[tuple[str, str], np.ndarray], t0: float,
              ) -> tuple[dict[tuple[str, str], bytes], list[dict[str, Any]]]:
    """What one processor that never stopped makes of the same messages, round by round:
    each stream's model state, and the alarm events (nobody acknowledging)."""
    proc = Processor(Metrics(CollectorRegistry()))
    events = []
    for k in range(ROUNDS):
        t = t0 + k * STEP_S
        out = proc.process([(f"wardwatch/v1/obs/{w}/{b}", payload(t, hr[(w, b)][k]), t + 1.0)
                            for w, b in BEDS])
        events += [orjson.loads(rec[1]) for rec in out.alerts]
    st, mid = proc.streams, METRIC_IDS["hr"]
    return {(w, b): st.row_state(st.index(w, b, mid)) for w, b in BEDS}, events


async def test_workers_joining_and_dying_score_every_observation_exactly_once(
        cluster: Cluster) -> None:
    py = sys.executable
    cluster.start_worker(0, 2, python=py, checkpoint_s=0.5)
    cluster.start_worker(1, 2, python=py, checkpoint_s=0.5)
    async with bucket(cluster) as kv:
        await _join_and_die(cluster, kv)


async def _join_and_die(cluster: Cluster, kv: Any) -> None:
    py = sys.executable

    async def assigned(workers: set[str]) -> dict[int, Entry] | None:
        """The entries, once each partition is held where the assignment puts it."""
        got = await entries(kv)
        want = assignment(PARTITIONS, workers)
        ok = len(got) == PARTITIONS and all(e.holder == want[p] for p, e in got.items())
        return got if ok else None

    start = await eventually(lambda: assigned({"w0", "w1"}), "12 partitions held", 120)
    hr = samples(seed=11)
    t0 = time.time() - ROUNDS * STEP_S - 600.0
    station = Client(cluster.nodes[2].mqtt_url, "station")
    station.listen("wardwatch/v1/alerts/#")
    devices = Client(cluster.nodes[0].mqtt_url, "devices")
    acked: list[dict[str, Any]] = []
    try:
        for k in range(ROUNDS):
            devices.round(k, t0 + k * STEP_S, hr)
            if k == 80:  # a worker joins: the partitions it wins are handed over to it
                cluster.start_worker(2, 3, python=py, checkpoint_s=0.5)
            if k == 120:
                joined = await eventually(lambda: assigned({"w0", "w1", "w2"}),
                                          "partitions handed over to w2", 120)
                w0_beds = {bed for bed, (p, *_) in committed(joined).items()
                           if joined[p].holder == "w0"} & TACHYCARDIC
            if k == 150:  # a nurse acknowledges the sounding alarms of w0's beds
                t150 = t0 + k * STEP_S
                await eventually(lambda t=t150, b=w0_beds: _reached(kv, b, t),
                                 "w0's beds processed up to now", 60)
                await asyncio.sleep(0.5)  # published before the commit; on their way
                acked = _sounding(station, w0_beds)
                for e in acked:
                    devices.ack(e)
                await eventually(lambda a=acked: _states(station, a, "acknowledged"),
                                 "the acknowledgements applied", 60)
                await asyncio.sleep(1.5)  # committed (every 0.5 s) before w0 dies
            if k == 160:  # a worker dies: the survivors take its partitions
                moved = {p for p, e in joined.items() if e.holder == "w0"}
                cluster.kill_worker(0)
                killed_at = time.monotonic()
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(devices.close)
    after = await eventually(lambda: assigned({"w1", "w2"}), "w0's partitions taken", 120)
    taken_s = time.monotonic() - killed_at
    handed = {p for p, e in joined.items() if e.holder == "w2"}
    assert handed and all(joined[p].epoch > start[p].epoch for p in handed)
    assert moved and all(after[p].epoch > joined[p].epoch for p in moved)

    _final, expected_events = await exactly_once(kv, hr, t0)

    # Alarms: what fired is what one uninterrupted processor fires (an event may come
    # twice, with its id, when a new holder replays past the last commit: at least once).
    unacked = set(BEDS) - {(e["ward"], e["bed"]) for e in acked}
    expected = await all_fired(station, expected_events, unacked)
    # the acknowledged alarms of w0's beds stayed acknowledged on their new holders: when
    # the tachycardia ends they resolve (an unacknowledged high-priority alarm latches)
    assert acked, "w0's beds had high-priority alarms sounding"
    ids = {e["id"] for e in acked}
    await eventually(lambda: _states(station, acked, "resolved"), "acked alarms resolved", 60)
    for alarm in ids:  # and none sounded again, as new, after its acknowledgement
        states = [e["state"] for e in station.events if e["id"] == alarm]
        assert "firing" not in states[states.index("acknowledged"):], (alarm, states)
    station.close()
    firings = [e["id"] for e in station.events if e["state"] == "firing"]
    print(f"w0's {len(moved)} partitions held again {taken_s:.1f} s after its SIGKILL "
          f"(upper bound: polled); {len(expected)} alarms fired as expected, {len(acked)} "
          f"acknowledged on w0 and resolved on its successors; {len(firings)} firing events "
          f"for {len(set(firings))} alarms")


async def exactly_once(kv: Any, hr: dict[tuple[str, str], np.ndarray], t0: float,
                       ) -> tuple[dict[tuple[str, str], tuple[int, float, bytes]],
                                  list[dict[str, Any]]]:
    """Once every stream's last sample is committed: each stream's committed model is
    bit for bit the uninterrupted one's. The committed states, and the reference's
    alarm events."""
    last_t = t0 + (ROUNDS - 1) * STEP_S

    async def caught_up() -> dict[tuple[str, str], tuple[int, float, bytes]] | None:
        got = committed(await entries(kv))
        done = len(got) == len(BEDS) and all(t == last_t for _, t, _ in got.values())
        return got if done else None

    try:
        final = await eventually(caught_up, "every stream's last sample committed", 180)
    except AssertionError:
        got = committed(await entries(kv))
        behind = {bed: (p, round((last_t - t) / STEP_S)) for bed, (p, t, _) in got.items()
                  if t != last_t}
        raise AssertionError(f"{len(got)} of {len(BEDS)} streams committed; behind, as "
                             f"(partition, samples): {behind}") from None
    states, events = reference(hr, t0)
    differ = [bed for bed in BEDS if final[bed][2] != states[bed]]
    assert not differ, f"streams whose state is not the uninterrupted one's: {differ}"
    assert np.isfinite(np.frombuffer(final[BEDS[0]][2][:L.NF * 8])).any()  # a trained model
    return final, events


def fired(events: list[dict[str, Any]], beds: set[tuple[str, str]]) -> set[str]:
    return {e["id"] for e in events if e["state"] == "firing" and (e["ward"], e["bed"]) in beds}


async def all_fired(station: Client, expected_events: list[dict[str, Any]],
                    beds: set[tuple[str, str]]) -> set[str]:
    """The station got every alarm of ``beds`` that the reference fired, and no other."""
    expected = fired(expected_events, beds)
    assert expected, "the tachycardic stretches fire"
    await eventually(lambda: fired(station.events, beds) >= expected, "every alarm", 60)
    assert fired(station.events, beds) == expected
    return expected


async def _reached(kv: Any, beds: set[tuple[str, str]], t: float) -> bool:
    """Whether the committed state of each of ``beds`` reflects its samples up to ``t``.
    (A state is committed only once the alarm events before it are published.)"""
    got = committed(await entries(kv))
    return all(bed in got and got[bed][1] >= t for bed in beds)


def _sounding(station: Client, beds: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """The high-priority alarms of ``beds`` that fired and have not ended."""
    last: dict[str, dict[str, Any]] = {}
    for e in station.events:
        if (e["ward"], e["bed"]) in beds:
            last[e["id"]] = e
    return [e for e in last.values()
            if e["state"] in ("firing", "escalated") and e["priority"] == "high"]


def _states(station: Client, events: list[dict[str, Any]], state: str) -> bool:
    """Whether the station saw ``state`` for each of ``events``' alarms."""
    seen = {e["id"] for e in station.events if e["state"] == state}
    return {e["id"] for e in events} <= seen


@pytest.mark.parametrize("via", ["mqtt", "jetstream"])
async def test_the_bridge_moves_to_another_node_and_loses_nothing(
        cluster: Cluster, tmp_path: Path, via: str) -> None:
    """Monitors send HL7 through ``wardwatch bridge`` to one node (then another); that node
    is SIGKILLed under load. Every message the bridge answered AA reaches the worker: every
    stream's model is again bit for bit the uninterrupted one's.

    Over MQTT the node killed leads neither the intake stream nor the state bucket (NATS
    2.9 acknowledges MQTT publishes before the stream stores them, so a lost leader loses
    them: README "A cluster"). Through JetStream (``[bridge] nats``) the node killed is the
    intake stream's leader itself: the bridge deletes a message only on the stream's own
    acknowledgement, and sends again what got none."""
    cluster.start_worker(0, 1, python=sys.executable, checkpoint_s=0.5)  # MQTT on n1 first
    port = free_port()
    (tmp_path / "bridge").mkdir()
    bridge = None
    try:
        async with bucket(cluster) as kv:
            if via == "mqtt":
                victim = await non_leader(cluster, cluster.nodes)
                env = {}
            else:
                victim = await stream_leader(cluster)
                env = {"WARDWATCH_BRIDGE_NATS": ",".join(cluster.nats_urls)}
            other = next(n for n in cluster.nodes if n is not victim)
            bridge = spawn_bridge(f"{victim.mqtt_url},{other.mqtt_url}", port,
                                  tmp_path / "bridge", client_id="bridge-cluster", env=env)
            want = assignment(PARTITIONS, {"w0"})

            async def held() -> bool:
                got = await entries(kv)
                return len(got) == PARTITIONS and all(e.holder == want[p]
                                                      for p, e in got.items())

            await eventually(held, "12 partitions held", 120)
            await eventually(lambda: listening(port), "the bridge to listen", 60)
            hr = samples(seed=31)
            # whole seconds: an HL7 time has at most 4 decimals (the bridge's times are exact)
            t0 = float(int(time.time() - ROUNDS * STEP_S - 600.0))
            refused = []
            async with MllpClient(port) as monitor:
                for k in range(ROUNDS):
                    when = dt.datetime.fromtimestamp(t0 + k * STEP_S, dt.UTC)
                    for ward, bed in BEDS:
                        ack = await monitor.send(oru(
                            f"{k}-{bed}", f"{ward}^{bed}",
                            [("8867-4^HR^LN", f"{hr[(ward, bed)][k]:.1f}", "/min", when)]))
                        if ack.msa[1] != "AA":
                            refused.append(ack.msa)
                    if k == 80:
                        cluster.kill_node(victim)
            assert not refused
            await exactly_once(kv, hr, t0)
    finally:
        if bridge is not None:
            bridge.send_signal(signal.SIGTERM)
            bridge.wait(60)
    log = (tmp_path / "bridge" / "bridge.log").read_text()
    assert "broker connection down" in log  # it did lose its node on the way
    if via == "jetstream":  # and publishes went unacknowledged, and were sent again
        assert "JetStream did not acknowledge" in log


async def stream_leader(cluster: Cluster) -> Any:
    """The node that leads the intake stream now."""
    import nats

    nc = await nats.connect(servers=cluster.nats_urls)
    try:
        leader = (await nc.jetstream().stream_info("WARDWATCH_IN")).cluster.leader
    finally:
        await nc.close()
    return next(n for n in cluster.nodes if n.name == leader)

