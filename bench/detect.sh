#!/usr/bin/env bash
# detect.sh - how long flr takes to notice a lost server, against the session timeout.
#
# For each ZooKeeper session timeout it runs a small BSP job on a local cluster whose
# coordinator SIGKILLs a serving server --kills times (the local launcher relaunches it)
# and prints, per kill, the detection time (kill -> shards marked RECOVERING) and the
# recovery time (kill -> shards serving again), each also as a multiple of the timeout.
#
#   bench/detect.sh [--build-dir DIR] [--timeouts "1000 2000 4000"] [--kills N]
#
# Run it from a build (make bench-detect does).  The goal is detection under 2x the
# session timeout.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${FLR_BUILDDIR:-$here/build}
timeouts="1000 2000 4000" kills=2
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --timeouts) timeouts=$2; shift 2 ;;
    --kills) kills=$2; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "detect.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[ -x "$build/flr-coordinator" ] || { echo "detect.sh: no flr-coordinator in $build (build first)" >&2; exit 1; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    { echo "detect.sh: needs Debian's dataset-fashion-mnist" >&2; exit 1; }

. "$here/scripts/cluster.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/flr-detect.XXXXXX")
cluster_init "$work" "$build"
cluster_zk_start 200 # ticks of 200 ms: session timeouts from 400 to 4000 ms

printf '%-10s %-5s %10s %8s %11s %8s\n' timeout_ms kill detect_ms x_timeout recover_ms x_timeout
worst=0
for to in $timeouts; do
    job=detect$to
    cluster_spawn "$job" "$build/flr-coordinator" --zk "$ZK" --job "$job" --servers 2 --workers 2 \
        --model softmax --launcher local --kills "$kills" --session-timeout "$to" \
        --server-logs "$work" --report "$work/$job.json"
    for i in 0 1; do
        cluster_spawn "$job-w$i" "$build/flr-worker" --zk "$ZK" --job "$job" --id $i \
            --epochs $((2 + kills * (to + 999) / 1000)) --batch 32 --session-timeout "$to" --evaluate no
    done
    cluster_wait "$job" 900 || { echo "detect.sh: job $job did not finish" >&2; exit 1; }
    [ "$CLUSTER_RC" -eq 0 ] || { echo "detect.sh: job $job failed" >&2; tail "$work/$job.log" >&2; exit 1; }
    python3 - "$work/$job.json" "$to" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
to = int(sys.argv[2])
for i, f in enumerate(r["failures"], 1):
    d, rc = f["detect_ms"], f["recover_ms"]
    print("%-10d %-5d %10s %8.2f %11s %8.2f" % (to, i, d, d / to, rc, rc / to))
PY
done
