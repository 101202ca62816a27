#!/usr/bin/env bash
# Install wardwatch on a gateway (Debian 12 / Ubuntu 22.04+, x86_64 or aarch64), as root:
#
#   sudo deploy/install.sh [--root DIR] [--no-systemd] [--python PYTHON] [--print-python]
#
# What it does (each step is idempotent; an existing /etc/wardwatch/wardwatch.toml is kept):
#   - Python >= 3.11 with venv: Debian 12's python3; on Ubuntu 22.04 (JetPack 6), whose
#     python3 is 3.10, the python3.11 package from Ubuntu's universe, installed beside
#     the system Python (which stays the default: nothing else on the board changes)
#   - the system user and group `wardwatch` (no login, no home)
#   - /opt/wardwatch/.venv with wardwatch and its runtime dependencies only, pinned by
#     constraints.txt (the daemon and the bridge: no pandas, statsmodels, matplotlib...)
#   - /etc/wardwatch/wardwatch.toml (from deploy/wardwatch.toml), /var/lib/wardwatch
#     (the store) and /var/cache/wardwatch/numba, where the scoring kernels are compiled
#     now, as the wardwatch user, so that the service's first start loads them in a second;
#     the two live ones also ahead of time (gcc and python3.X-dev from apt), so that it
#     starts without numba
#   - the systemd units wardwatch.service and wardwatch-bridge.service, enabled, not started
#
# --root DIR installs into DIR instead of / (a staging tree, the tests): no user, no apt,
# no systemctl; the files are where they would be, under DIR. --print-python only says which
# Python it would use (or that it would install python3.11), and changes nothing.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
root=""
systemd=1
python=""
print_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root DIR}; shift 2 ;;
        --no-systemd) systemd=0; shift ;;
        --python) python=${2:?--python PYTHON}; shift 2 ;;
        --print-python) print_only=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
staging=0
[ -n "$root" ] && staging=1 && root=$(mkdir -p "$root" && cd "$root" && pwd)
say() { echo "install.sh: $*"; }

ok_python() { "$1" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

if [ -n "$python" ] && ! ok_python "$python"; then
    echo "install.sh: $python is not a Python >= 3.11 with venv" >&2
    exit 1
fi
if [ -z "$python" ]; then
    for p in python3 python3.13 python3.12 python3.11; do
        if command -v "$p" >/dev/null && ok_python "$p"; then python=$(command -v "$p"); break; fi
    done
fi
if [ "$print_only" = 1 ]; then
    echo "${python:-apt: python3.11 python3.11-venv (or python3-venv)}"
    exit 0
fi
if [ -z "$python" ]; then
    [ "$staging" = 1 ] && { echo "install.sh: no Python >= 3.11 with venv" >&2; exit 1; }
    say "installing Python 3.11 beside the system Python (apt)"
    apt-get update -q
    if apt-cache show python3.11-venv >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3.11 python3.11-venv
        python=$(command -v python3.11)
    else  # Debian 12's python3 is 3.11: only venv is missing
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv
        python=$(command -v python3)
    fi
    ok_python "$python" || { echo "install.sh: still no Python >= 3.11" >&2; exit 1; }
fi
say "Python: $python ($("$python" -c 'import platform; print(platform.python_version(), platform.machine())'))"

opt=$root/opt/wardwatch
etc=$root/etc/wardwatch
state=$root/var/lib/wardwatch
cache=$root/var/cache/wardwatch

if [ "$staging" = 0 ] && ! id wardwatch >/dev/null 2>&1; then
    say "creating the system user wardwatch"
    useradd --system --user-group --no-create-home --home-dir /var/lib/wardwatch \
        --shell /usr/sbin/nologin wardwatch
fi
as_service() {  # run a command as the service user (as the caller when staging)
    if [ "$staging" = 0 ]; then runuser -u wardwatch -- "$@"; else "$@"; fi
}

mkdir -p "$opt" "$etc" "$state/bridge" "$cache/numba"
[ -x "$opt/.venv/bin/python" ] || "$python" -m venv "$opt/.venv"
say "installing wardwatch into $opt/.venv (runtime dependencies only)"
"$opt/.venv/bin/python" -m pip install -q --upgrade pip
# a copy of the source, so the venv does not depend on where this checkout lives
rm -rf "$opt/src" && mkdir -p "$opt/src"
(cd "$src" && tar --exclude=.venv --exclude=.git --exclude='*.egg-info' --exclude=build \
    --exclude=test-artifacts -cf - pyproject.toml constraints.txt README.md monitor edge \
    simulators deploy) | tar -C "$opt/src" -xf -
"$opt/.venv/bin/python" -m pip install -q -c "$opt/src/constraints.txt" "$opt/src"

if [ ! -f "$etc/wardwatch.toml" ]; then
    install -m 644 "$src/deploy/wardwatch.toml" "$etc/wardwatch.toml"
else
    say "keeping the existing $etc/wardwatch.toml"
fi
if [ "$staging" = 0 ]; then
    chown -R wardwatch:wardwatch "$state" "$cache"
    chmod 750 "$state" "$cache"
fi

say "compiling the scoring kernels into $cache/numba (30-60 s once)"
# from /, as the service runs: the installed package, not a checkout in the current folder
# (Numba keys its cache on the source file's path)
(cd / && as_service env NUMBA_CACHE_DIR="$cache/numba" WARDWATCH_KERNELS=jit \
    "$opt/.venv/bin/python" -c 'from monitor.scoring import Scorer; Scorer().warm_up()')

# the two live kernels also compiled ahead, into the same directory: the daemon then
# starts without importing numba (monitor/scoring/aot.py); a C compiler and Python's
# headers are needed for it. Without them it runs the cache above (Numba's JIT).
pydev=$("$opt/.venv/bin/python" -c 'import sys; print("python%d.%d-dev" % sys.version_info[:2])')
inc=$("$opt/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if [ "$staging" = 0 ] && { ! command -v cc >/dev/null || [ ! -f "$inc/Python.h" ]; }; then
    say "installing gcc and $pydev (apt), to compile the kernels ahead"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc "$pydev" || true
fi
say "compiling the live kernels ahead into $cache/numba (~20 s)"
if ! (cd / && as_service env NUMBA_CACHE_DIR="$cache/numba" "$opt/.venv/bin/python" -m \
        monitor.scoring.build_kernels); then
    say "WARNING: the kernels were not compiled ahead (a C compiler and $pydev are needed);" \
        "the daemon runs Numba's JIT from the cache, and starts ~0.5 s slower"
fi

if [ "$systemd" = 1 ]; then
    units=$root/etc/systemd/system
    mkdir -p "$units"
    for u in wardwatch.service wardwatch-bridge.service; do
        install -m 644 "$src/deploy/systemd/$u" "$units/$u"
    done
    if [ "$staging" = 0 ] && command -v systemctl >/dev/null; then
        systemctl daemon-reload
        systemctl enable wardwatch.service wardwatch-bridge.service
        say "enabled; start with: systemctl start wardwatch wardwatch-bridge"
    fi
fi
say "done: $opt/.venv/bin/wardwatch; settings in $etc/wardwatch.toml"
