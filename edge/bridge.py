"""``wardwatch bridge``: HL7 v2 ORU^R01 over MLLP in, the wire contract over MQTT out.

For each MLLP block (``0x0B`` message ``0x1C 0x0D``, framed by python-hl7's asyncio
reader), in the order the device sent them:

1. decode it in the character set MSH-18 names (UTF-8 when it names none);
2. parse it (python-hl7) and map its OBX segments (:mod:`edge.hl7map`);
3. pseudonymise PID-3 (:mod:`monitor.pseudonym`), correct a device clock that is off by
   more than ``max_clock_offset_s``;
4. store the wire messages in the spool (:mod:`edge.spool`), durably;
5. only then answer ``AA``. A message that cannot be used is answered ``AE`` (an error the
   sender may retry: spool full, unknown unit...) or ``AR`` (rejected: not ORU^R01,
   unparseable, too large...), with the reason in MSA-3, and counted by reason.

The forwarder publishes the spool at QoS 1, in order, and deletes each message when the
broker's PUBACK comes back. paho resends what was in flight after a reconnect; while the
broker is away the spool grows, and when it is back the spool drains in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hl7
import hl7.mllp
import orjson
import paho.mqtt.client as paho
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from edge.hl7map import Mapped, Refused, map_message, zone_of
from edge.presence import Presence
from edge.spool import Spool
from monitor.config import Settings
from monitor.errors import ConfigError, SpoolError
from monitor.mqtt import RECONNECT_MAX_S, all_client_args, broker_urls, paho_client, redacted
from monitor.pseudonym import Pseudonymizer
from monitor.systemd import Notifier
from monitor.vitals import METRIC_IDS
from monitor.wire import OBS_PREFIX

log = logging.getLogger(__name__)

CHUNK_OBS = 1000  # observations per MQTT message: ~70 kB, well under ingest's bound
CHARSETS = {"": "utf-8", "ASCII": "ascii", "UNICODE UTF-8": "utf-8", "UNICODE": "utf-8",
            "8859/1": "latin-1", "8859/15": "iso8859-15"}
CLOCK_ALPHA = 0.2  # smoothing of each device's clock offset
MAX_CODE_LABELS = 50  # distinct unmapped codes with a label of their own (bounded cardinality)


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"bridge.listen must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter("wardwatch_bridge_messages", "HL7 messages answered, by MSA-1",
                                ["ack"], registry=registry)
        self.refused = Counter("wardwatch_bridge_refused", "HL7 messages refused, by reason",
                               ["reason"], registry=registry)
        self.observations = Counter("wardwatch_bridge_observations",
                                    "observations spooled", registry=registry)
        self.ignored = Counter("wardwatch_bridge_ignored_observations",
                               "OBX segments with a code the bridge does not map",
                               ["code"], registry=registry)
        self.published = Counter("wardwatch_bridge_published",
                                 "wire messages acknowledged by the broker", registry=registry)
        self.spool_depth = Gauge("wardwatch_bridge_spool_messages",
                                 "wire messages waiting in the spool", registry=registry)
        self.spool_age = Gauge("wardwatch_bridge_spool_oldest_seconds",
                               "age of the oldest spooled message", registry=registry)
        self.connected = Gauge("wardwatch_bridge_broker_connected",
                               "1 while the broker connection is up", registry=registry)
        self.clock_offset = Gauge("wardwatch_bridge_clock_offset_seconds",
                                  "gateway clock minus the device's (MSH-7), smoothed",
                                  ["ward", "bed"], registry=registry)
        self.clock_corrected = Counter("wardwatch_bridge_clock_corrected",
                                       "observations whose time was corrected for the "
                                       "device's clock offset", registry=registry)
        self.online = Gauge("wardwatch_bridge_beds_online", "beds announced online",
                            registry=registry)


class Bridge:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        b = settings.bridge
        self.host, self.port = parse_listen(b.listen)
        for key, metric in b.codes.items():
            if metric not in METRIC_IDS or "^" not in key:
                raise ConfigError(f"bridge.codes: {key!r} = {metric!r}: need \"SYSTEM^CODE\" = "
                                  f"one of {', '.join(METRIC_IDS)}")
        self.codes = dict(b.codes)
        self.zone: dt.tzinfo = zone_of(b.timezone)
        self.clock = clock or time.time
        self.facility = b.facility or socket.gethostname().split(".")[0][:20]
        self.pseudonym = (Pseudonymizer.from_file(settings.pseudonym.key_file)
                          if settings.pseudonym.key_file else None)
        self.registry = CollectorRegistry()
        self.metrics = BridgeMetrics(self.registry)
        self.spool = Spool(Path(settings.store.dir) / "bridge-spool.db", b.spool_max_messages)
        self.offsets: dict[tuple[str, str], float] = {}
        self.server: asyncio.AbstractServer | None = None
        self.presence = Presence(settings.mqtt.url, client_id=b.client_id,
                                 tls_files=settings.mqtt.tls_files(),
                                 timeout_s=b.device_timeout_s, on_change=self._presence)
        self._online: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._acked: list[int] = []
        self._inflight: dict[int, int] = {}  # paho mid -> spool seq
        self._sent_upto = 0  # highest seq handed to paho
        self._connected = False
        self._warned_no_key = False
        self._mqtt: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listening = asyncio.Event()
        self._writers: set[hl7.mllp.HL7StreamWriter] = set()
        self._acks = 0  # MSH-10 of the ACKs sent
        self._code_labels: set[str] = set()

    # -- the broker side ---------------------------------------------------------------
    def _start_mqtt(self) -> None:
        m = self.settings.mqtt
        urls = broker_urls(m.url)
        client, host, port = paho_client(urls[0], client_id=self.settings.bridge.client_id,
                                         clean_session=True, **m.tls_files())
        # a cluster's nodes (comma-separated): after a lost connection, the next one
        self._nodes = [(str(a["hostname"]), int(a["port"])) for a in all_client_args(
            m.url, identifier="-", **m.tls_files())]
        self._node = 0
        client.max_inflight_messages_set(self.settings.bridge.window)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._next_node
        client.on_publish = self._on_publish
        client.connect_async(host, port, keepalive=m.keepalive)
        client.loop_start()
        self._mqtt = client
        log.info("bridge forwarding to %s", redacted(m.url))

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop has closed: shutting down
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any = None) -> None:
        if not rc.is_failure:
            self._call(self._set_connected, True)
        else:
            log.warning("broker refused the bridge: %s", rc)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any = None) -> None:
        self._call(self._set_connected, False)
        self._next_node(client)

    def _next_node(self, client: paho.Client, *_: Any) -> None:
        """After a lost connection or a failed attempt: a cluster's next node (paho
        reconnects to the host set here), so a dead node is not tried forever."""
        if len(self._nodes) > 1:
            self._node = (self._node + 1) % len(self._nodes)
            host, port = self._nodes[self._node]
            client.connect_async(host, port, keepalive=self.settings.mqtt.keepalive)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, rc: Any,
                    props: Any = None) -> None:
        self._call(self._puback, mid)

    def _set_connected(self, up: bool) -> None:
        if up != self._connected:
            log.info("broker connection %s", "up" if up else "down; spooling")
        self._connected = up
        self.metrics.connected.set(1 if up else 0)
        self._wake.set()

    def _puback(self, mid: int) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is not None:
            self._acked.append(seq)
            self._wake.set()

    async def _forward(self) -> None:
        """Hand spooled messages to paho in order, ``window`` at a time; forget acked ones."""
        assert self._mqtt is not None
        window = self.settings.bridge.window
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._acked:
                done, self._acked = self._acked, []
                self.spool.delete(done)
                self.metrics.published.inc(len(done))
            if self._connected and len(self._inflight) < window:
                for seq, topic, payload in self.spool.after(self._sent_upto,
                                                            window - len(self._inflight)):
                    info = self._mqtt.publish(topic, payload, qos=1)
                    self._inflight[info.mid] = seq
                    self._sent_upto = seq
            self._gauges()

    def _gauges(self) -> None:
        self.metrics.spool_depth.set(self.spool.depth)
        self.metrics.spool_age.set(self.spool.oldest_age() if self.spool.depth else 0.0)

    def _presence(self, ward: str, bed: str, up: bool) -> None:
        (self._online.add if up else self._online.discard)((ward, bed))
        self.metrics.online.set(len(self._online))

    # -- the device side ---------------------------------------------------------------
    async def _connection(self, reader: hl7.mllp.HL7StreamReader,
                          writer: hl7.mllp.HL7StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        log.info("MLLP connection from %s", peer)
        self._writers.add(writer)
        skipping = False  # inside the rest of a block over the size bound
        try:
            while True:
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip() and not skipping:
                        self._refused("truncated", "AR")
                        log.warning("%s closed inside a message (%d bytes unframed)",
                                    peer, len(exc.partial))
                    break
                except hl7.mllp.InvalidBlockError:
                    if skipping:  # the tail of the oversized block: already answered
                        skipping = False
                        continue
                    writer.writeblock(self._bare_ack("AR", "", "MLLP framing: a block must "
                                                     "start with 0x0B", reason="framing"))
                    await writer.drain()
                    continue
                except ValueError as exc:  # over the stream limit: that part was dropped
                    # asyncio says whether the block's end was in what it dropped; if not,
                    # the rest of it is still to come and must be skipped, not answered
                    ended = "is found" in str(exc)
                    if not skipping:
                        limit = self.settings.bridge.max_message_bytes
                        writer.writeblock(self._bare_ack(
                            "AR", "", f"message over {limit} bytes", reason="too_large"))
                        await writer.drain()
                    skipping = not ended
                    continue
                try:
                    answer = self.handle(block)
                except Exception:  # a bug must not end the connection or the bridge
                    log.exception("internal error on a message from %s", peer)
                    answer = self._bare_ack("AE", "", "internal error in the bridge; "
                                            "nothing was spooled, send it again",
                                            reason="internal_error")
                writer.writeblock(answer)
                await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("MLLP connection from %s lost: %s", peer, exc)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def handle(self, block: bytes) -> bytes:
        """One MLLP block in, its ACK out (encoded as the message was)."""
        charset = _charset(block)
        encoding = CHARSETS.get(charset.upper())
        if encoding is None:
            return self._bare_ack("AR", "", f"character set {charset!r} (MSH-18) is not "
                                  f"supported: {', '.join(k for k in CHARSETS if k)}",
                                  reason="charset")
        try:
            text = block.decode(encoding)
        except UnicodeDecodeError as exc:
            return self._bare_ack("AR", "", f"not valid {encoding}: byte {exc.start}",
                                  reason="encoding")
        try:
            msg = hl7.parse(text.replace("\r\n", "\r").replace("\n", "\r").strip("\r"))
            msg.segment("MSH")
        except (hl7.ParseException, KeyError, IndexError, ValueError) as exc:
            return self._bare_ack("AR", "", f"not an HL7 v2 message: {exc}"[:200],
                                  reason="unparseable")
        try:
            mapped = map_message(msg, self.codes, self.zone)
            n = self._spool(mapped)
        except Refused as exc:
            return self._ack(msg, encoding, exc.code, exc.text, reason=exc.reason)
        except SpoolError as exc:
            return self._ack(msg, encoding, "AE", str(exc), reason="spool")
        for code, count in mapped.ignored.items():
            # a label per code a device sends, up to MAX_CODE_LABELS; then "other"
            if code not in self._code_labels and len(self._code_labels) < MAX_CODE_LABELS:
                self._code_labels.add(code)
            label = code if code in self._code_labels else "other"
            self.metrics.ignored.labels(label).inc(count)
        note = ""
        if mapped.ignored:
            note = "not watched: " + ", ".join(sorted(mapped.ignored))
        self.metrics.observations.inc(n)
        return self._ack(msg, encoding, "AA", note[:200])

    def _spool(self, m: Mapped) -> int:
        """The message's observations into the spool as wire messages; their count."""
        recv = self.clock()
        key = (m.ward, m.bed)
        if m.sent is not None:  # the device's clock against ours
            offset = recv - m.sent
            prev = self.offsets.get(key)
            self.offsets[key] = offset if prev is None else prev + CLOCK_ALPHA * (offset - prev)
            self.metrics.clock_offset.labels(m.ward, m.bed).set(self.offsets[key])
        shift = self.offsets.get(key, 0.0)
        if abs(shift) > self.settings.bridge.max_clock_offset_s and m.obs:
            for ob in m.obs:
                ob["t"] = float(ob["t"]) + shift  # type: ignore[arg-type]
            self.metrics.clock_corrected.inc(len(m.obs))
        if not m.obs:
            return 0
        patient = ""
        if m.patient_id:
            if self.pseudonym is not None:
                patient = self.pseudonym(m.patient_id)
            elif not self._warned_no_key:
                self._warned_no_key = True
                log.warning("no [pseudonym] key_file: patient identifiers are not forwarded")
        topic = f"{OBS_PREFIX}{m.ward}/{m.bed}"
        out = []
        for i in range(0, len(m.obs), CHUNK_OBS):
            body: dict[str, Any] = {"obs": m.obs[i:i + CHUNK_OBS]}
            if patient:
                body["patient"] = patient
            out.append((topic, orjson.dumps(body)))
        self.spool.put(out)
        self._wake.set()
        self.presence.seen(m.ward, m.bed)
        return len(m.obs)

    def _refused(self, reason: str, code: str) -> None:
        self.metrics.refused.labels(reason).inc()
        self.metrics.messages.labels(code).inc()

    def _ack(self, msg: hl7.Message, encoding: str, code: str, text: str, *,
             reason: str = "") -> bytes:
        if code != "AA":
            self._refused(reason, code)
            log.warning("refused %s message %s: %s", code, _control_id(msg), text)
        else:
            self.metrics.messages.labels(code).inc()
        ack = msg.create_ack(code, message_id=f"WW{self._ack_id()}",
                             application=self.settings.bridge.application,
                             facility=self.facility)
        lines = str(ack).split("\r")
        msh = lines[0].split("|")
        if len(msh) > 6:  # MSH-7 with its offset (python-hl7 writes local time without one)
            msh[6] = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S+0000")
            lines[0] = "|".join(msh)
        if text:
            lines = [ln + "|" + msg.escape(text) if ln.startswith("MSA|") else ln
                     for ln in lines]
        return "\r".join(lines).encode(encoding, errors="replace")

    def _bare_ack(self, code: str, control_id: str, text: str, *, reason: str = "") -> bytes:
        """An ACK for a block that is not a readable message (so no MSH to answer from)."""
        if reason:
            self._refused(reason, code)
            log.warning("refused %s block: %s", code, text)
        now = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S+0000")
        esc = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\") \
            .replace("&", "\\T\\").replace("~", "\\R\\")
        return (f"MSH|^~\\&|{self.settings.bridge.application}|{self.facility}|||{now}||ACK|"
                f"WW{self._ack_id()}|P|2.5.1\rMSA|{code}|{control_id}|{esc}").encode()

    def _ack_id(self) -> int:
        self._acks += 1
        return self._acks

    # -- running -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        b = self.settings.bridge
        http = None
        if b.metrics_port:
            http = start_http_server(b.metrics_port, b.metrics_host, registry=self.registry)
        if b.nats:  # a cluster: JetStream's acknowledgement, stored on a quorum
            from edge.jsforward import JetStreamForwarder

            js = JetStreamForwarder(b.nats, self.spool, window=b.window, name=b.client_id,
                                    published=self.metrics.published,
                                    connected=self._set_connected, wake=self._wake,
                                    gauges=self._gauges)
            forward = asyncio.create_task(js.run(), name="bridge forwarder")
        else:
            self._start_mqtt()
            forward = asyncio.create_task(self._forward(), name="bridge forwarder")
        self._wake.set()  # what an earlier run left in the spool
        server: asyncio.Server = await hl7.mllp.start_hl7_server(
            self._connection, self.host, self.port, limit=b.max_message_bytes)
        self.server = server
        sock = server.sockets[0].getsockname()
        self.port = int(sock[1])
        log.info("bridge listening for MLLP on %s:%d; spool %s (%d waiting)", self.host,
                 self.port, self.spool.path, self.spool.depth)
        self.listening.set()
        notifier = Notifier()
        notifier.ready(f"listening on {self.host}:{self.port}, {self.spool.depth} spooled")
        pinger = asyncio.create_task(self._watchdog(notifier, forward), name="bridge watchdog")
        stopped = asyncio.create_task(stop.wait())
        try:
            # the forwarder never returns; if it fails, the bridge fails (and is restarted)
            # rather than acknowledge devices into a spool nothing drains
            await asyncio.wait({stopped, forward}, return_when=asyncio.FIRST_COMPLETED)
            if forward.done():
                forward.result()
        finally:
            stopped.cancel()
            notifier.stopping()
            pinger.cancel()
            self.server.close()
            for w in list(self._writers):  # devices resend what was not answered
                w.close()
            await asyncio.sleep(0)
            await self.presence.close()
            await self._drain(5.0)
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forward
            if self._mqtt is not None:
                self._mqtt.disconnect()
                self._mqtt.loop_stop()
            self.spool.close()
            if http is not None:
                http[0].shutdown()
                http[0].server_close()
            log.info("bridge stopped; %d messages left in the spool for the next start",
                     self.spool.depth)

    async def _watchdog(self, notifier: Notifier, forward: asyncio.Task[None]) -> None:
        """WATCHDOG=1 while the event loop turns and the forwarder lives (systemd kills
        and restarts a wedged bridge; the spool keeps what was acknowledged)."""
        if not notifier.watchdog_s:
            return
        while not forward.done():
            notifier.watchdog()
            await asyncio.sleep(notifier.watchdog_s)

    async def _drain(self, seconds: float) -> None:
        """Give the broker a moment to take what is spooled before stopping."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while self.spool.depth and self._connected and loop.time() < end:
            self._wake.set()
            await asyncio.sleep(0.05)


def _charset(block: bytes) -> str:
    """MSH-18 read from the raw bytes (ASCII in every character set HL7 allows)."""
    first = block.split(b"\r", 1)[0].split(b"\n", 1)[0]
    if len(first) < 4 or not first.startswith(b"MSH"):
        return ""
    fields = first.split(first[3:4])
    return fields[17].decode("ascii", errors="replace").strip() if len(fields) > 17 else ""


def _control_id(msg: hl7.Message) -> str:
    try:
        return str(msg.segment("MSH").extract_field(1, 10, 1, 1))
    except (KeyError, IndexError):
        return "?"
