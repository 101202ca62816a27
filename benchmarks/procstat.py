"""CPU time from /proc, for the benchmarks that read it (processes and threads alike)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process or thread ``pid`` (a thread id works too)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each of this process's live threads, by thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in map(int, os.listdir("/proc/self/task")):
        try:
            s = cpu_s(tid)
        except OSError:  # the thread ended
            continue
        name = names.get(tid, f"thread {tid}")
        out[name] = out.get(name, 0.0) + s
    return out
