"""The nurses' station: accounts and sessions, the API's guards, and the page in Chromium."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.ruleset import parse_overrides
from monitor.station.auth import Accounts
from tests.conftest import RunningDaemon, running_station
from tests.monitor.helpers import eventually, publish

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
PASSWORD = "correct horse battery"


# -- accounts, without a server ----------------------------------------------------------
def test_passwords_are_argon2id_and_sessions_expire(tmp_path: Path) -> None:
    acc = Accounts(tmp_path / "station.db", idle_s=600, max_s=3600)
    acc.add_user("kim", PASSWORD, "nurse")
    (stored,) = acc._db.execute("SELECT hash FROM users").fetchone()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert acc.check_password("kim", PASSWORD) == "nurse"
    assert acc.check_password("kim", "wrong horse battery") is None
    assert acc.check_password("nobody", PASSWORD) is None
    t0 = 1_000_000.0
    token = acc.open_session("kim", now=t0)
    (row,) = acc._db.execute("SELECT token_sha256 FROM sessions").fetchone()
    assert token not in row  # only a hash of the token is stored
    s = acc.session(token, now=t0 + 500)
    assert s is not None and s.may("nurse") and not s.may("admin")
    assert acc.session(token, now=t0 + 500 + 601) is None  # idle too long
    token = acc.open_session("kim", now=t0)
    for k in range(1, 8):  # kept alive, but a session ends max_s after sign-in anyway
        assert acc.session(token, now=t0 + 500 * k) is not None
    assert acc.session(token, now=t0 + 3601) is None
    with pytest.raises(Exception, match="exists"):
        acc.add_user("kim", PASSWORD, "admin")
    with pytest.raises(Exception, match="10 characters"):
        acc.add_user("lee", "short", "nurse")


def test_the_users_command_creates_the_first_admin(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "users", "add", "ward.admin", "--role", "admin",
         "--password-stdin", "--store", str(tmp_path)],
        input=PASSWORD + "\n", capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    assert Accounts(tmp_path / "station.db").check_password("ward.admin", PASSWORD) == "admin"


# -- the API's guards, on a running daemon ------------------------------------------------
@pytest.fixture
async def station(services: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    # HR stale after 3 s instead of 60, to see it within a test
    rules = {"*": parse_overrides({"hr.stale": {"threshold": 3.0}}, "test")}
    async with running_station(services, tmp_path, {"nurse.kim": ("nurse", ()),
                                                    "viewer.vic": ("viewer", ())},
                               rules=rules) as rd:
        yield rd


def _base(rd: RunningDaemon) -> str:
    return f"http://127.0.0.1:{rd.settings.http.port}"


async def _sign_in(http: httpx.AsyncClient, user: str) -> dict[str, Any]:
    page = await http.get("/login")
    csrf = page.cookies["ww_login"]
    resp = await http.post("/login", data={"username": user, "password": PASSWORD,
                                           "csrf": csrf})
    assert resp.status_code == 303 and resp.headers["location"] == "/"
    me = (await http.get("/api/me")).json()
    assert me["username"] == user
    return me


@pytest.mark.integration
async def test_no_page_or_api_without_signing_in_and_no_change_without_a_nurse(
    station: RunningDaemon,
) -> None:
    url = station.settings.mqtt.url
    await publish(url, "wardwatch/v1/obs/4C/2", {"obs": [
        {"metric": "sbp", "t": time.time(), "v": 85, "unit": "mm[Hg]"}]})
    assert station.daemon is not None
    engine = station.daemon.processor.alarms
    await eventually(lambda: engine.active(), "the SBP alarm")
    (alarm, _), = engine.active()
    ack = {"ward": "4C", "bed": "2", "id": alarm.id, "action": "ack"}
    async with httpx.AsyncClient(base_url=_base(station)) as anon:
        assert (await anon.get("/healthz")).status_code == 200
        assert (await anon.get("/api/beds")).status_code == 401
        assert (await anon.get("/api/stream")).status_code == 401
        home = await anon.get("/")
        assert home.status_code == 303 and home.headers["location"] == "/login"
        assert (await anon.post("/api/ack", json=ack)).status_code == 401
        # a sign-in without the form's CSRF cookie is refused; a wrong password too
        bad = await anon.post("/login", data={"username": "nurse.kim", "password": PASSWORD})
        assert bad.status_code == 403
        await anon.get("/login")
        wrong = await anon.post("/login", data={"username": "nurse.kim", "password": "x" * 12,
                                                "csrf": anon.cookies["ww_login"]})
        assert wrong.headers["location"] == "/login?failed=1"
        # guessing is cut short: after 5 failures in 5 min, even the right password waits
        station.daemon.accounts.add_user("lou.locked", PASSWORD, "viewer")
        for _ in range(5):
            r = await anon.post("/login", data={"username": "lou.locked", "password": "y" * 12,
                                                "csrf": anon.cookies["ww_login"]})
            assert r.status_code == 303
        r = await anon.post("/login", data={"username": "lou.locked", "password": PASSWORD,
                                            "csrf": anon.cookies["ww_login"]})
        assert r.status_code == 429
        assert (await anon.get("/static/..%2F__init__.py")).status_code == 404
        assert (await anon.get("/static/station.css")).status_code == 200
    async with httpx.AsyncClient(base_url=_base(station)) as viewer:
        me = await _sign_in(viewer, "viewer.vic")
        beds = (await viewer.get("/api/beds")).json()
        assert beds[0]["bed"] == "2" and beds[0]["priority"] == "high"
        r = await viewer.post("/api/ack", json=ack, headers={"X-CSRF-Token": me["csrf"]})
        assert r.status_code == 403  # a viewer may look, not acknowledge
    async with httpx.AsyncClient(base_url=_base(station)) as nurse:
        me = await _sign_in(nurse, "nurse.kim")
        assert (await nurse.post("/api/ack", json=ack)).status_code == 403  # no CSRF token
        r = await nurse.post("/api/ack", json=ack, headers={
            "X-CSRF-Token": me["csrf"], "Origin": "http://evil.example"})
        assert r.status_code == 403  # another site's page
        r = await nurse.post("/api/ack", json={**ack, "by": "someone.else"},
                             headers={"X-CSRF-Token": me["csrf"]})
        assert r.status_code == 200
        (alarm, gs), = engine.active()
        assert alarm.state == "acknowledged" and gs.acked_by == "nurse.kim"  # not "by"
        r = await nurse.post("/api/ack", json={**ack, "id": "nope"},
                             headers={"X-CSRF-Token": me["csrf"]})
        assert r.status_code == 409
        audit = (await nurse.get("/api/audit")).json()
        assert [(e["action"], e["by"]) for e in audit[:2]] == [
            ("rejected", "nurse.kim"), ("acknowledged", "nurse.kim")]
        # a stream that stops is marked stale, never shown as fresh, and alarms
        await publish(url, "wardwatch/v1/obs/4C/9", {"obs": [
            {"metric": "hr", "t": time.time(), "v": 70, "unit": "/min"}]})

        async def stale_bed() -> dict[str, Any] | None:
            beds = (await nurse.get("/api/beds")).json()
            b9 = next((b for b in beds if b["bed"] == "9"), None)
            return b9 if b9 and b9["vitals"]["hr"]["stale"] else None

        b9 = await eventually(stale_bed, "bed 9's HR marked stale")
        assert time.time() - b9["vitals"]["hr"]["seen"] > 3
        assert [a["code"] for a in b9["alarms"]] == ["hr.stale"]
        # signing out ends the session on the server, not just in the browser
        out = await nurse.post("/logout", headers={"X-CSRF-Token": me["csrf"]})
        assert out.status_code == 200
        assert (await nurse.get("/api/beds")).status_code == 401
