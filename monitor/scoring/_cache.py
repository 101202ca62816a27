"""Keep Numba's on-disk cache of the kernels consistent with their sources.

Numba checks a cached function against its *own* source file only. ``score_batch`` (in
``_kernels.py``) inlines ``grid_update`` (in ``_grid.py``); after an edit of ``_grid.py``
alone it would load the stale machine code. Before the first kernel call, the cache
files are dropped when any kernel source changed since they were written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_SOURCES = ("_grid.py", "_jit.py", "_kernels.py", "_layout.py", "_window.py")
_STAMP = "wardwatch-kernels.sha256"


def sources_digest() -> str:
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update((_HERE / name).read_bytes())
    return h.hexdigest()


def drop_stale(cache: Path = _HERE / "__pycache__") -> bool:
    """Delete the cached kernels if they may predate a source change; True if deleted.

    A read-only install cannot be cleaned here; Numba then compiles in memory.
    """
    digest = sources_digest()
    stamp = cache / _STAMP
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    dropped = False
    try:
        for f in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            f.unlink(missing_ok=True)
            dropped = True
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:
        pass
    return dropped
