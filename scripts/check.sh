#!/usr/bin/env bash
# check.sh - install what flr needs, build it, and run the whole test suite (unit tests
# and integration tests with a real ZooKeeper and real processes).
#
#   scripts/check.sh [--build-dir DIR] [-- make-check-args...]
#
# Exits non-zero when any test fails; the logs of failed tests are printed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build"
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) build=$2; shift 2 ;;
    -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) echo "check.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

. "$root/scripts/deps.sh"
flr_install_deps
flr_build "$root" "$build"

jobs=$(nproc 2>/dev/null || echo 2)
if ! make -C "$build" -j"$jobs" check "$@"; then
    echo "check.sh: test failures; logs of the failed tests follow" >&2
    for f in "$build"/tests/*.log; do
        [ -f "$f" ] || continue
        case "$f" in */test-suite.log) continue ;; esac
        if grep -qE '^:test-result: (FAIL|ERROR)' "${f%.log}.trs" 2>/dev/null; then
            echo "===== $f" >&2
            grep -m 3 '^FAIL' "$f" >&2 || true # the reason, which the tail may cut off
            tail -n 60 "$f" >&2
        fi
    done
    exit 1
fi
