#!/usr/bin/env bash
# recovery.sh - how long recovery = flr takes to rebuild a lost shard, against the time
# the same bytes take to cross loopback.
#
# For each shard size (MiB of parameters) it runs a BSP job of the oracle model on one
# server holding one shard (a dense table of 64 rows sized to fill it), SGD, one worker
# (k = 2: the worker's pulled rows are the copies), and SIGKILLs the server after two
# iterations.  The local launcher starts a replacement, which rebuilds the shard from the
# worker.  It prints, per size: kill -> serving again, detection -> serving again (the
# rebuild), the time bench/xfer needs to move the same bytes over loopback with flr's
# transport (best of 2, measured in the same run), and the ratio rebuild / transfer.
# For context it also prints the transfer into fresh memory (xfer --fresh: the receiver's
# pages faulted in during the run, as a new server's are) and the rebuild's phases from the
# new server's log: opening the empty shard, streaming, replaying the logs, and the page
# faults the new server took meanwhile (a huge page is one fault, a 4 KiB page another).
#
#   bench/recovery.sh [--build-dir DIR] [--sizes "1 16 128 1024"] [--shards N]
#
# --shards N splits the server's table over N shards (default 1), which its replacement
# rebuilds together; the phases printed are then those of the shard its log names last.
#
# Goal: the rebuild of a 1 GiB shard within 3x its transfer time.  The 1 GiB case needs
# about 8 GiB of free memory.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${FLR_BUILDDIR:-$here/build}
sizes="1 16 128 1024"
shards=1
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "recovery.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[ -x "$build/flr-coordinator" ] && [ -x "$build/bench/xfer" ] ||
    { echo "recovery.sh: no flr-coordinator or bench/xfer in $build (build first)" >&2; exit 1; }
for s in $sizes; do
    [[ $s =~ ^[0-9]+$ ]] && [ "$s" -ge 1 ] || { echo "recovery.sh: sizes are whole MiB (got '$s')" >&2; exit 2; }
done
[[ $shards =~ ^[0-9]+$ ]] && [ "$shards" -ge 1 ] && [ "$shards" -le 64 ] ||
    { echo "recovery.sh: --shards takes 1 to 64 (got '$shards')" >&2; exit 2; }

. "$here/scripts/cluster.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/flr-recovery.XXXXXX")
cluster_init "$work" "$build"
cluster_zk_start 200
echo "bench-$RANDOM$RANDOM" >"$work/token" # kill-server is an operator command
"$build/flr-datagen" --rows 8192 --test-rows 100 --seed 9 --out-dir "$work/ctr" >"$work/datagen.log" 2>&1

printf '%8s %12s %14s %8s %9s %8s %10s %8s %8s %8s %8s %8s %8s\n' size_MiB kill_to_serve detect_to_serve \
    xfer_ms ratio rows_lost rebuilt fresh_ms open_ms strm_ms strm_MB rply_ms faults
n=0
for s in $sizes; do
    n=$((n + 1))
    job=rec$s-$n # a size may be given more than once: each run is a job of its own
    dim=$((s * 1048576 / (64 * 4)))
    bytes=$((s * 1048576))
    # Several seconds of training, so that the job is still running when the kill lands
    # (workers publish their clocks once a second) and the kill falls at a random point.
    iters=$((8192 / s > 6 ? 8192 / s : 6))
    mkdir -p "$work/$job"
    cluster_spawn "$job" "$build/flr-coordinator" --zk "$ZK" --job "$job" --servers 1 --shards "$shards" \
        --workers 1 --model oracle --hidden "$dim" --optimizer sgd --lr 1 --consistency bsp \
        --recovery flr --k 2 --launcher local --server-logs "$work/$job" --session-timeout 2000 \
        --report "$work/$job.json" --http-token-file "$work/token"
    cluster_spawn "$job-w0" "$build/flr-worker" --zk "$ZK" --job "$job" --id 0 \
        --train "$work/ctr/train.tsv" --max-rows "$iters" --epochs 1 --batch 1 --evaluate no \
        --session-timeout 2000
    wait_for 600 sh -c "'$build/flrctl' --zk '$ZK' --job '$job' status --json 2>/dev/null |
        jq -e '.workers[0].clock >= 2' >/dev/null" || { echo "recovery.sh: $job did not start" >&2; exit 1; }
    "$build/flrctl" --zk "$ZK" --job "$job" --token-file "$work/token" kill-server 0 >/dev/null ||
        { echo "recovery.sh: $job: the kill did not land (did the job end first?)" >&2; exit 1; }
    cluster_wait "$job" 900 || { echo "recovery.sh: $job did not finish" >&2; exit 1; }
    cluster_wait "$job-w0" 60 || true
    read -r kill detect lost rebuilt < <(jq -r '.failures[0] | "\(.recover_ms) \(.detect_ms) \(.rows_lost) \(.rows_rebuilt)"' "$work/$job.json")
    xfer=$("$build/bench/xfer" "$bytes" 2 | awk '{ printf "%.0f", $2 * 1000 }')
    fresh=$("$build/bench/xfer" --fresh "$bytes" 2 | awk '{ printf "%.0f", $2 * 1000 }')
    # The replacement's log (the last server0.log lines): srv.rebuild and srv.rebuilt.
    open=$(grep -o 'opened in [0-9]* ms' "$work/$job/server0.log" | tail -n 1 | tr -dc 0-9)
    strm=$(grep -o 'streamed in [0-9]* ms' "$work/$job/server0.log" | tail -n 1 | tr -dc 0-9)
    rply=$(grep -o 'replayed in [0-9]* ms' "$work/$job/server0.log" | tail -n 1 | tr -dc 0-9)
    mb=$(grep -o '([0-9]* bytes streamed' "$work/$job/server0.log" | tail -n 1 | tr -dc 0-9)
    mb=${mb:+$((mb / 1000000))}
    pf=$(grep -o '[0-9]* page faults' "$work/$job/server0.log" | tail -n 1 | tr -dc 0-9)
    rebuild=$((kill - detect))
    printf '%8d %12d %14d %8d %9.2f %8d %10d %8d %8s %8s %8s %8s %8s\n' "$s" "$kill" "$rebuild" "$xfer" \
        "$(awk -v a="$rebuild" -v b="$xfer" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$lost" \
        "$rebuilt" "$fresh" "${open:--}" "${strm:--}" "${mb:--}" "${rply:--}" "${pf:--}"
done
