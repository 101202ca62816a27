"""Compile the daemon's live kernels ahead of time (see :mod:`monitor.scoring.aot`).

    python -m monitor.scoring.build_kernels [--dir DIR] [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.scoring.aot import build, path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m monitor.scoring.build_kernels",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=None,
                    help="where to build (default: $NUMBA_CACHE_DIR, else the package's "
                         "__pycache__)")
    ap.add_argument("--check", action="store_true",
                    help="only say whether they are built for these sources (exit 1 if not)")
    args = ap.parse_args(argv)
    file = path(args.dir)
    if args.check:
        print(f"{file}: {'built' if file.is_file() else 'not built'}")
        return 0 if file.is_file() else 1
    if file.is_file():
        print(f"{file}: built already")
        return 0
    print(f"compiling the live kernels ahead into {build(args.dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
