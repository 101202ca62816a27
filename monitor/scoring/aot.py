"""The live kernels compiled ahead of time, so that the daemon starts without Numba.

    python -m monitor.scoring.build_kernels [--dir DIR] [--check]

The daemon runs two kernels live, :func:`~monitor.scoring._kernels.in_order` and
:func:`~monitor.scoring._kernels.score_batch`. With Numba's cache warm, loading them
still costs ~0.5 s at each start: importing numba (~0.2 s), then its typing and lowering
registries and scipy.linalg for its BLAS check (~0.3 s), and ~125 MB. Compiled ahead
with :mod:`numba.pycc` into a small C extension (the same Numba front end and LLVM, for
the architecture's generic CPU so a copied install runs anywhere of that architecture),
they load in under a millisecond and numba is never imported by ``wardwatch run``. They
are as fast as the JIT's here (``benchmarks/scoring.py``) and give the same bits
(``tests/monitor/test_aot.py``).

The extension is built at setup (``./dev setup``, ``deploy/install.sh``; a C compiler and
Python's headers are needed, ~20 s) into the directory of Numba's cache:
``$NUMBA_CACHE_DIR``, else ``monitor/scoring/__pycache__``. Its name carries a digest of
the kernels' sources, this file, numba's and numpy's versions and the machine, so an edit
or an upgrade makes it miss, and the daemon falls back to Numba's JIT (it logs which it runs)
until it is built again. ``numba.pycc`` is deprecated in Numba; it is still shipped in the
version pinned here, and the JIT remains the fallback when it goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from monitor.scoring import _cache

_HERE = Path(__file__).resolve().parent
_PREFIX = "_ww_kernels_"

# the live kernels' argument types: (numpy dtype, ndim), all C-contiguous
_I1, _F1, _B2, _I2, _F2 = (np.int64, 1), (np.float64, 1), (np.bool_, 2), (np.int64, 2), \
    (np.float64, 2)
ARGS: dict[str, tuple[tuple[Any, int], ...]] = {
    "in_order": (_I1, _F1),
    # starts sid metric t v fs ist rt rx rok sw gh params edges upper n_edges out band
    # status scratch
    "score_batch": (_I1, _I1, _I1, _F1, _F1, _F2, _I2, _F2, _F2, _B2, _F2, _F2, _F2, _F2,
                    _B2, _I1, _F2, _I1, _I1, _F1),
}
RETURNS = {"in_order": "b1", "score_batch": "void"}
WRITES = {"in_order": (), "score_batch": (5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19)}


class Kernels(NamedTuple):
    """The live kernels and where they come from."""

    in_order: Callable[..., bool]
    score_batch: Callable[..., None]
    source: str  # "compiled ahead (path)" or "Numba JIT"


def directory() -> Path:
    """Where the compiled kernels live: Numba's cache directory."""
    cache = os.environ.get("NUMBA_CACHE_DIR")
    return Path(cache) if cache else _HERE / "__pycache__"


def module_name() -> str:
    """The extension's name for these sources, this build, numba, numpy and machine."""
    h = hashlib.sha256(_cache.sources_digest().encode())
    h.update(Path(__file__).read_bytes())  # how they are built: this file
    spec = importlib.util.find_spec("numba")  # found, not imported
    if spec is not None and spec.origin is not None:
        version = Path(spec.origin).with_name("_version.py")
        h.update(version.read_bytes() if version.is_file() else spec.origin.encode())
    h.update(f"{np.__version__} {platform.machine()} {sys.implementation.cache_tag}".encode())
    return _PREFIX + h.hexdigest()[:20]


def path(where: Path | None = None) -> Path:
    return (where or directory()) / (module_name() + importlib.machinery.EXTENSION_SUFFIXES[0])


def load(where: Path | None = None) -> Kernels | None:
    """The compiled-ahead kernels for these sources, or None if they are not built."""
    file = path(where)
    if not file.is_file():
        return None
    spec = importlib.util.spec_from_file_location(file.name.split(".")[0], file)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Kernels(_checked(module, "in_order"), _checked(module, "score_batch"),
                   f"compiled ahead ({file})")


def _checked(module: ModuleType, name: str) -> Callable[..., Any]:
    """The exported function, behind a check of its arguments' types.

    A compiled-ahead function takes any array whose item size matches: it does not check
    the dtype's kind, the dimensions or the layout the way Numba's dispatcher does, and
    would read a strided or wrongly typed array as if it were the declared one.
    """
    f = getattr(module, name)
    want = [(np.dtype(dt), nd, i in WRITES[name]) for i, (dt, nd) in enumerate(ARGS[name])]

    def call(*args: Any) -> Any:
        if len(args) != len(want):
            raise TypeError(f"{name}: {len(args)} arguments, {len(want)} expected")
        for i, (a, (dt, nd, written)) in enumerate(zip(args, want, strict=True)):
            if not (isinstance(a, np.ndarray) and a.dtype == dt and a.ndim == nd
                    and a.flags.c_contiguous and (a.flags.writeable or not written)):
                raise TypeError(f"{name}: argument {i} must be a C-contiguous {nd}-d {dt} "
                                f"array{', writeable' if written else ''}")
        return f(*args)

    call.__name__ = call.__qualname__ = name
    return call


def _signature(name: str) -> str:
    code = {np.dtype(np.int64): "i8", np.dtype(np.float64): "f8", np.dtype(np.bool_): "b1"}
    args = [code[np.dtype(dt)] + ("[::1]" if nd == 1 else "[:, ::1]") for dt, nd in ARGS[name]]
    return f"{RETURNS[name]}({', '.join(args)})"


@contextlib.contextmanager
def _releasing_the_gil() -> Iterator[None]:
    """Compile the exported functions' wrappers to let go of the GIL while they run, as
    the JIT's kernels do (``nogil=True``: offline ``score`` overlaps the kernel with the
    alarm walk, and the intake's network thread reads while a batch is scored). pycc has
    no option for it: its compiler makes its own ``Flags()``, whose ``release_gil`` this
    sets (numba is pinned; ``tests/monitor/test_aot.py`` checks the result)."""
    compiler: Any = importlib.import_module("numba.pycc.compiler")
    plain = compiler.Flags

    def flags() -> Any:
        f = plain()
        f.release_gil = True
        return f

    compiler.Flags = flags
    try:
        yield
    finally:
        compiler.Flags = plain


def build(where: Path | None = None) -> Path:
    """Compile the live kernels into ``where`` (default :func:`directory`), replacing
    any earlier build; returns the extension's path."""
    with warnings.catch_warnings():  # numba.pycc's pending deprecation: see the notes
        warnings.simplefilter("ignore")
        from numba.pycc import CC  # type: ignore[attr-defined]

        from monitor.scoring import _kernels
    target = path(where)
    target.parent.mkdir(parents=True, exist_ok=True)
    name = module_name()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cc = CC(name)  # type: ignore[no-untyped-call]
        cc.output_dir = tmp
        cc.use_nrt = False  # as the JIT's kernels: they allocate nothing (see _jit.py)
        cc.target_cpu = ""  # the architecture's generic CPU
        cc.verbose = False
        for fn in ARGS:
            cc.export(fn, _signature(fn))(getattr(_kernels, fn).py_func)  # type: ignore[no-untyped-call]
        with warnings.catch_warnings(), _releasing_the_gil():
            warnings.simplefilter("ignore")
            cc.compile()
        built = Path(tmp) / target.name
        os.replace(built, target)
    for old in target.parent.glob(_PREFIX + "*"):
        if old != target:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    return target
