"""A gateway's load: CPU and memory of the bridge and the daemon at 40 beds.

    .venv/bin/python benchmarks/gateway.py [--beds 40] [--seconds 120] [--warm 20]

A private Mosquitto, ``wardwatch run`` (SQLite history) and ``wardwatch bridge``, each its
own process, and a device process: 40 beds, each on its own MLLP connection, sending
HL7 v2 ORU^R01 as bedside monitors do — HR every second, NIBP (systolic, diastolic, mean)
every 15 minutes and glucose from a CGM every 5 minutes (each bed at a random phase), each
message waiting for its ACK. After ``--warm`` seconds (start-up and the first messages
are not counted) the CPU time (user + system, /proc/PID/stat) and memory (VmRSS, VmHWM)
of every process are read over ``--seconds``.

The baseline, on the same load first: a do-nothing MLLP listener that answers every block
with a fixed AA and keeps nothing (what the device side of any bridge must at least do).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "deploy" / "dev")]

from procstat import cpu_s  # noqa: E402
from services import Services, free_port  # noqa: E402

DEVICES = r"""
import asyncio, datetime as dt, random, sys
port, beds, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def dtm(t): return t.strftime("%Y%m%d%H%M%S+0000")
def oru(cid, bed, rows, now):
    segs = [f"MSH|^~\\&|MONITOR|ICU|WARDWATCH|GW|{dtm(now)}||ORU^R01^ORU_R01|{cid}|P|2.5.1",
            "PID|1", f"PV1|1|I|GW^{bed}", f"OBR|1|||93104-2^Vitals^LN|||{dtm(now)}"]
    segs += [f"OBX|{i}|NM|{c}||{v}|{u}|||||F|||{dtm(now)}" for i, (c, v, u) in enumerate(rows, 1)]
    return b"\x0b" + "\r".join(segs).encode() + b"\r\x1c\r"
async def bed(b, sent):
    rng = random.Random(b)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    nibp, cgm = rng.uniform(0, 900), rng.uniform(0, 300)
    start = asyncio.get_running_loop().time()
    k = 0
    while (el := asyncio.get_running_loop().time() - start) < seconds:
        now = dt.datetime.now(dt.UTC)
        rows = [("8867-4^HR^LN", 70 + rng.randint(-5, 5), "/min")]
        if el >= nibp:
            rows += [("8480-6^SBP^LN", 120, "mm[Hg]"), ("8462-4^DBP^LN", 75, "mm[Hg]"),
                     ("8478-0^MAP^LN", 90, "mm[Hg]")]
            nibp += 900
        if el >= cgm:
            rows += [("2339-0^Glucose^LN", 110, "mg/dL")]
            cgm += 300
        w.write(oru(f"{b}-{k}", b, rows, now))
        await w.drain()
        ack = await r.readuntil(b"\x1c\r")
        sent[ack[ack.find(b"MSA|") + 4:ack.find(b"MSA|") + 6].decode()] += 1
        k += 1
        await asyncio.sleep(max(0.0, start + k - asyncio.get_running_loop().time()))
    w.close()
async def main():
    sent = {"AA": 0, "AE": 0, "AR": 0}
    await asyncio.gather(*(bed(b, sent) for b in range(1, beds + 1)))
    print(sent)
asyncio.run(main())
"""

NULL_LISTENER = r"""
import asyncio, sys
ACK = b"\x0bMSH|^~\\&|NULL|GW|||20260101000000||ACK|1|P|2.5.1\rMSA|AA|x\x1c\r"
async def conn(r, w):
    try:
        while True:
            await r.readuntil(b"\x1c\r")
            w.write(ACK)
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        w.close()
async def main():
    server = await asyncio.start_server(conn, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


def spawn(argv: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """A process of the run (from the checkout, its Numba cache warm: run this twice)."""
    err = log.open("wb") if log is not None else None
    try:
        return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL if log else None,
                                stderr=err)
    finally:
        if err is not None:
            err.close()


def mem_mb(pid: int) -> tuple[float, float]:
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return (int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024)


async def wait_listening(port: int, within: float = 120) -> None:
    end = time.monotonic() + within
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.2)


async def measure(pids: dict[str, int], devices: subprocess.Popen[bytes],
                  warm: float, seconds: float) -> dict[str, tuple[float, float, float]]:
    await asyncio.sleep(warm)
    before = {n: cpu_s(pid) for n, pid in pids.items()}
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    span = time.monotonic() - t0
    out = {}
    for n, pid in pids.items():
        rss, hwm = mem_mb(pid)
        out[n] = (100 * (cpu_s(pid) - before[n]) / span, rss, hwm)
    await asyncio.to_thread(devices.wait)
    return out


def report(title: str, rows: dict[str, tuple[float, float, float]], acks: str) -> None:
    print(f"\n{title} (device answers: {acks.strip()})")
    print(f"{'process':<12} {'CPU % of one core':>18} {'RSS MB':>8} {'peak RSS MB':>12}")
    for n, (cpu, rss, hwm) in rows.items():
        print(f"{n:<12} {cpu:>18.1f} {rss:>8.0f} {hwm:>12.0f}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beds", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--warm", type=float, default=20.0)
    args = ap.parse_args()
    random.seed(1)
    total = args.warm + args.seconds + 5
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="ww-gateway-") as tmp, Services(Path(tmp)) as svc:
        svc.start(("mosquitto",))
        url = svc.started["mosquitto"].url
        mllp = free_port()

        def devices() -> subprocess.Popen[bytes]:
            return subprocess.Popen([py, "-c", DEVICES, str(mllp), str(args.beds), str(total)],
                                    stdout=subprocess.PIPE)

        null = spawn([py, "-c", NULL_LISTENER, str(mllp)])
        await wait_listening(mllp)
        dev = devices()
        base = await measure({"null MLLP": null.pid, "devices": dev.pid}, dev, args.warm,
                             args.seconds)
        report("baseline: a do-nothing MLLP listener", base, dev.stdout.read().decode())  # type: ignore[union-attr]
        null.terminate()
        null.wait()

        daemon = spawn([py, "-m", "monitor.cli", "run", "--broker", url, "--store",
                        f"{tmp}/daemon", "--metrics-port", "0", "--http-port", str(free_port())],
                       Path(tmp) / "daemon.log")
        bridge = spawn([py, "-m", "monitor.cli", "bridge", "--listen", f"127.0.0.1:{mllp}",
                        "--broker", url, "--store", f"{tmp}/bridge", "--metrics-port", "0"],
                       Path(tmp) / "bridge.log")
        await wait_listening(mllp)
        dev = devices()
        rows = await measure({"bridge": bridge.pid, "daemon": daemon.pid,
                              "mosquitto": svc.started["mosquitto"].pid, "devices": dev.pid},
                             dev, args.warm, args.seconds)
        report(f"wardwatch bridge + daemon, {args.beds} beds", rows,
               dev.stdout.read().decode())  # type: ignore[union-attr]
        both = rows["bridge"][0] + rows["daemon"][0]
        print(f"\nbridge + daemon: {both:.1f}% of one core, "
              f"{rows['bridge'][2] + rows['daemon'][2]:.0f} MB peak RSS together; "
              f"bridge CPU / do-nothing listener CPU: "
              f"{rows['bridge'][0] / max(base['null MLLP'][0], 1e-9):.1f}x")
        for p in (bridge, daemon):
            p.terminate()
            p.wait(60)


if __name__ == "__main__":
    asyncio.run(main())
