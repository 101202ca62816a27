"""How the kernels are compiled: one place for the flags and the reasons.

* ``cache=True``: a restart loads the machine code from ``__pycache__`` instead of
  compiling for seconds (:mod:`monitor.scoring._cache` keeps it consistent).
* ``_nrt=False``: no Numba runtime. The kernels allocate nothing; every array (state,
  outputs, scratch) comes in from Python. With the runtime on, Numba reference-counts
  every array handed to a helper and every row view taken, with atomic increments that
  its pruning pass cannot remove across branches (numba/numba#2350); in this kernel
  that was ~40% of the per-sample cost. ``_nrt`` is a flag of Numba's compiler
  (``Flags.nrt``) rather than a documented option, so numba is pinned in
  ``constraints.txt``; a kernel that tried to allocate would fail to compile, not
  misbehave.
* ``nogil=True``: a kernel lets go of the GIL while it runs, so offline ``score`` runs
  the kernel on one chunk while the alarm engine (Python) walks the one before.
* ``u(i)`` in the hottest loops: Numba wraps a negative signed index (``a[-1]``) with a
  compare-and-add on every access, which LLVM cannot drop when it cannot prove the index
  non-negative (an index moved by a comparison, as in a branch-free partition); an
  unsigned index has no such path. Only for indices that are never negative.
* Helpers are ``inline="always"``: inlined at Numba IR level into the entry kernel, so
  LLVM optimises one function per call site instead of calls that pass every state
  array's descriptor (tens of arguments) for each sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

# _nrt is not in numba's stubs
_OPTIONS: dict[str, Any] = {"cache": True, "_nrt": False, "nogil": True}

kernel = njit(**_OPTIONS)  # an entry point, called from Python
helper = njit(inline="always", **_OPTIONS)  # called from a kernel only


@helper
def u(i):  # type: ignore[no-untyped-def]
    """``i`` (never negative) as an unsigned index: no wraparound code at the access."""
    return np.uint64(i)


__all__ = ["helper", "kernel", "u"]
