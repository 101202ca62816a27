"""InfluxDB history: batched line protocol over the v1 ``/write`` API or the v2 API.

Debian ships InfluxDB 1.6, which has only the v1 API; 2.x/3.x (and 1.8+) speak v2,
through influxdb-client. ``[influx] api`` selects which.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import httpx

from monitor.errors import SinkError
from monitor.spool import PermanentSinkError, Record


def _tag(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _str_field(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _num(x: Any) -> str | None:
    if x is None:
        return None
    f = float(x)
    return None if not math.isfinite(f) else repr(f)


def to_line_protocol(records: Sequence[Record]) -> str:
    """Records (see :mod:`monitor.sinks`) as InfluxDB line protocol, millisecond precision."""
    lines: list[str] = []
    for rec in records:
        if rec[0] == "v":
            _, ward, bed, metric, t, value, score, forecast = rec
            fields = f"value={float(value)!r}"
            for key, x in (("score", score), ("forecast", forecast)):
                num = _num(x)
                if num is not None:
                    fields += f",{key}={num}"
            lines.append(
                f"vitals,bed={_tag(bed)},metric={metric},ward={_tag(ward)} {fields} "
                f"{round(float(t) * 1000)}"
            )
        elif rec[0] == "b":
            _, ward, bed, t, score = rec
            lines.append(f"bed_anomaly,bed={_tag(bed)},ward={_tag(ward)} "
                         f"score={float(score)!r} {round(float(t) * 1000)}")
        else:
            a = rec[1]
            parts = [f"id={_str_field(a['id'])}", f"value={float(a['value'])!r}",
                     f"message={_str_field(a['message'])}"]
            for key in ("threshold", "forecast"):
                num = _num(a.get(key))
                if num is not None:
                    parts.append(f"{key}={num}")
            lines.append(
                f"alarms,bed={_tag(a['bed'])},code={_tag(a['code'])},metric={a['metric']},"
                f"priority={a['priority']},state={a['state']},ward={_tag(a['ward'])} "
                f"{','.join(parts)} {round(float(a['t']) * 1000)}"
            )
    return "\n".join(lines)


class InfluxV1Sink:
    """Writes to ``POST /write?db=...&precision=ms`` (InfluxDB 1.x); creates the database."""

    def __init__(self, url: str, database: str, *, retention_policy: str = "",
                 username: str = "", password: str = "", timeout_s: float = 5.0) -> None:
        self.name = "influxdb"
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        auth = (username, password) if username else None
        self._http = httpx.AsyncClient(base_url=self.url, auth=auth, timeout=timeout_s)
        self._db_ready = False

    async def _ensure_database(self) -> None:
        resp = await self._http.post("/query", params={"q": f'CREATE DATABASE "{self.database}"'})
        resp.raise_for_status()
        self._db_ready = True

    async def write(self, records: Sequence[Record]) -> None:
        body = to_line_protocol(records)
        params = {"db": self.database, "precision": "ms"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        try:
            if not self._db_ready:
                await self._ensure_database()
            resp = await self._http.post("/write", params=params, content=body.encode())
        except httpx.HTTPError as exc:
            raise SinkError(f"InfluxDB {self.url}: {exc!r}") from exc
        if resp.status_code == 204:
            return
        text = resp.text[:300]
        if resp.status_code == 404:  # database dropped under us: create it again, retry later
            self._db_ready = False
            raise SinkError(f"InfluxDB {self.url}: 404 {text}")
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            raise PermanentSinkError(f"InfluxDB {self.url}: {resp.status_code} {text}")
        raise SinkError(f"InfluxDB {self.url}: {resp.status_code} {text}")

    async def close(self) -> None:
        await self._http.aclose()


class InfluxV2Sink:
    """Writes through influxdb-client's v2 write API (InfluxDB 2.x/3.x, 1.8+ compat)."""

    def __init__(self, url: str, *, token: str, org: str, bucket: str,
                 timeout_s: float = 5.0) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.name = "influxdb"
        self.url = url
        self.org = org
        self.bucket = bucket
        self._client = InfluxDBClient(url=url, token=token, org=org,
                                      timeout=int(timeout_s * 1000))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    async def write(self, records: Sequence[Record]) -> None:
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.domain.write_precision import WritePrecision

        body = to_line_protocol(records)
        try:
            # The v2 client is synchronous; keep it off the event loop.
            await asyncio.to_thread(
                self._write_api.write, bucket=self.bucket, org=self.org, record=body,
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]
            )
        except InfluxDBError as exc:
            status = getattr(getattr(exc, "response", None), "status", None)
            if status is not None and 400 <= status < 500 and status not in (404, 408, 429):
                raise PermanentSinkError(f"InfluxDB v2 {self.url}: {exc}") from exc
            raise SinkError(f"InfluxDB v2 {self.url}: {exc}") from exc
        except Exception as exc:  # urllib3 / socket errors from the client library
            raise SinkError(f"InfluxDB v2 {self.url}: {exc!r}") from exc

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)
