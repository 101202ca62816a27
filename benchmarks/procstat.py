"""CPU time from /proc, for the benchmarks that read it: of a process, of each thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")


def _cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``, all its threads."""
    return _cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each of this process's live threads, by thread name (a thread's
    own figures are under /proc/self/task; /proc/TID/stat gives the whole process's)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in map(int, os.listdir("/proc/self/task")):
        try:
            s = _cpu(Path(f"/proc/self/task/{tid}/stat"))
        except OSError:  # the thread ended
            continue
        name = names.get(tid, f"thread {tid}")
        out[name] = out.get(name, 0.0) + s
    return out
