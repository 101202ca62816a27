"""The station across a cluster: any worker's page shows the whole hospital.

Two workers each hold half the partitions, so half of every ward, and each serves the
station. Through one worker's station only, a nurse sees every bed, the other worker's
alarms, trends and audit lines, and acknowledges an alarm the other worker holds, which
records it. Then that worker is SIGKILLed: the page says that beds are missing, and
which, until its partitions are taken over; then every bed is back, and the alarm is
still acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from monitor.station.auth import Accounts
from tests.cluster.helpers import (
    BEDS,
    PARTITIONS,
    Client,
    Cluster,
    bucket,
    committed,
    entries,
    free_port,
)
from tests.monitor.helpers import eventually

PASSWORD = "correct horse battery"
WARD = "4A"
ROUNDS = 70
STEP_S = 5.0
TACHYCARDIC = {bed for i, bed in enumerate(BEDS) if i % 3 == 0}

def hr(k: int, bed: tuple[str, str]) -> float:
    return 140.0 if bed in TACHYCARDIC and k >= 20 else 75.0 + (k % 5)


async def sign_in(http: httpx.AsyncClient) -> str:
    """Sign in as the nurse; the session's CSRF token."""
    await http.get("/login")
    resp = await http.post("/login", data={"username": "nurse.kim", "password": PASSWORD,
                                           "csrf": http.cookies["ww_login"]})
    assert resp.status_code == 303, resp.text
    return str((await http.get("/api/me")).json()["csrf"])


@contextlib.asynccontextmanager
async def station(port: int) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        await eventually(lambda: _up(http), f"the station on {port}", 120)
        yield http, await sign_in(http)


async def _up(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/login")).status_code == 200
    except httpx.TransportError:
        return False


async def test_any_worker_shows_the_whole_hospital_and_says_what_is_missing(
    cluster: Cluster,
) -> None:
    ports = [free_port(), free_port()]
    for k in range(2):
        store = cluster.root / f"worker{k}"
        store.mkdir()
        accounts = Accounts(store / "station.db")  # each worker's own accounts
        accounts.add_user("nurse.kim", PASSWORD, "nurse")
        accounts.close()
        cluster.start_worker(k, 2, http_port=ports[k])
    async with bucket(cluster) as kv:
        await eventually(lambda: _held_by(kv, {"w0", "w1"}), "every partition held", 180)
        devices = Client(cluster.mqtt_urls[0], "devices")
        t0 = float(int(time.time() - ROUNDS * STEP_S - 60.0))
        for k in range(ROUNDS):
            for ward, bed in BEDS:
                body = {"obs": [{"metric": "hr", "t": t0 + k * STEP_S, "v": hr(k, (ward, bed)),
                                 "unit": "/min"}]}
                devices.infos.append(devices.client.publish(
                    f"wardwatch/v1/obs/{ward}/{bed}", orjson.dumps(body), qos=1))
        await asyncio.to_thread(devices.close)

        async def all_in() -> dict[tuple[str, str], Any] | None:
            got = committed(await entries(kv))
            done = all(b in got and got[b][1] == t0 + (ROUNDS - 1) * STEP_S for b in BEDS)
            return got if done else None

        where = await eventually(all_in, "every sample committed", 120)
        holders = {p: e.holder for p, e in (await entries(kv)).items()}
        on_w1 = sorted(b for b in TACHYCARDIC if holders[where[b][0]] == "w1")
        assert on_w1, "no tachycardic bed is held by w1: the test shows nothing"

        async with station(ports[0]) as (w0, csrf):
            # every bed, the other worker's too, and nothing said missing
            beds = await w0.get("/api/beds", params={"ward": WARD})
            assert {b["bed"] for b in beds.json()} == {b for _, b in BEDS}
            assert "X-Wardwatch-Missing" not in beds.headers
            assert all(b["vitals"]["hr"]["value"] == hr(ROUNDS - 1, (WARD, b["bed"]))
                       for b in beds.json())

            async def sounding() -> list[dict[str, Any]] | None:
                alarms = (await w0.get("/api/alarms", params={"ward": WARD})).json()
                got = {a["bed"] for a in alarms if a["metric"] == "hr"}
                return alarms if {b for _, b in TACHYCARDIC} <= got else None

            alarms = await eventually(sounding, "every tachycardic bed's alarm", 60)
            _, bed = on_w1[0]
            alarm = next(a for a in alarms if a["bed"] == bed and a["metric"] == "hr")
            sparks = (await w0.get("/api/sparklines")).json()
            assert set(sparks) == {f"{w}/{b}" for w, b in BEDS}
            trend = (await w0.get(f"/api/trend/{WARD}/{bed}")).json()
            assert trend["vitals"]["hr"]["value"], "no trend of a bed held by the other worker"
            assert any(e["alarm_id"] == alarm["id"] for e in trend["alarms"])

            # an ack on w0 of an alarm w1 holds: recorded by w1
            ack = {"ward": WARD, "bed": bed, "id": alarm["id"], "action": "ack"}
            resp = await w0.post("/api/ack", json=ack, headers={"X-CSRF-Token": csrf})
            assert resp.status_code == 200, resp.text
            wrong = await w0.post("/api/ack", json={**ack, "id": "no-such-alarm"},
                                  headers={"X-CSRF-Token": csrf})
            assert wrong.status_code == 409 and "no active alarm" in wrong.json()["error"]
            async with station(ports[1]) as (w1, _):
                there = (await w1.get("/api/alarms", params={"ward": WARD})).json()
                mine = next(a for a in there if a["id"] == alarm["id"])
                assert mine["state"] == "acknowledged" and mine["acked_by"] == "nurse.kim"
            audit = (await w0.get("/api/audit", params={"who": "people"})).json()
            assert any(e["alarm_id"] == alarm["id"] and e["action"] == "acknowledged"
                       and e["by"] == "nurse.kim" for e in audit)
            # the workers' own API answers only to a worker
            stranger = await w0.post("/cluster/v1/beds", json={"wards": None})
            assert stranger.status_code == 401

            # w1 killed: its beds are said missing, not silently gone, until taken over
            events = asyncio.create_task(_stream(w0))
            cluster.kill_worker(1)

            async def said_missing() -> str | None:
                resp = await w0.get("/api/beds", params={"ward": WARD})
                return resp.headers.get("X-Wardwatch-Missing")

            text = await eventually(said_missing, "the missing beds said", 60)
            assert f"of {PARTITIONS} partitions" in text

            async def whole() -> list[dict[str, Any]] | None:
                resp = await w0.get("/api/beds", params={"ward": WARD})
                got = resp.json()
                complete = "X-Wardwatch-Missing" not in resp.headers and len(got) == len(BEDS)
                return got if complete else None

            beds = await eventually(whole, "every bed back after the takeover", 120)
            assert {b["bed"] for b in beds} == {b for _, b in BEDS}
            after = (await w0.get("/api/alarms", params={"ward": WARD})).json()
            kept = next(a for a in after if a["id"] == alarm["id"])
            assert kept["state"] == "acknowledged" and kept["acked_by"] == "nurse.kim"
            said = await events
            assert any("missing" in e for e in said), "the page's stream never said it"
            assert "missing" not in said[-1]


async def _held_by(kv: Any, workers: set[str]) -> bool:
    got = await entries(kv)
    return len(got) == PARTITIONS and {e.holder for e in got.values()} == workers


async def _stream(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The page's events, until one says beds are missing and a later one does not."""
    out: list[dict[str, Any]] = []
    async with http.stream("GET", "/api/stream", params={"ward": WARD},
                           headers={"Accept-Encoding": "identity"}, timeout=180) as resp:
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            out.append(orjson.loads(line[6:]))
            if any("missing" in e for e in out) and "missing" not in out[-1]:
                break
    return out

