#!/usr/bin/env bash
# demo.sh - train a real model on a local flr cluster and print a report.
#
# Installs what is missing (Debian packages), builds flr, starts a ZooKeeper of its own on
# a free loopback port (or uses --zk), a coordinator, servers and workers, trains,
# evaluates on the test set, stops everything it started (also on Ctrl-C or failure),
# and prints a short report.
#
# Options:
#   --model NAME          softmax (default), mlp or ctr
#   --consistency MODE    bsp (default), ssp or asp
#   --staleness S         SSP bound (default 2)
#   --servers N           servers (default 2)
#   --workers N           workers (default 4)
#   --shards N            shards (default 4 per server)
#   --epochs N            passes over the data (default: softmax 5, mlp 10, ctr 2)
#   --batch N             samples per iteration per worker (default: softmax 32, mlp 16,
#                         ctr 512)
#   --optimizer NAME      sgd, momentum, adagrad or adam (default: the model's)
#   --lr RATE             learning rate (default: the model's)
#   --rows N              ctr: synthetic training rows to generate (default 1000000)
#   --kills N             SIGKILL a server N times during training; the coordinator
#                         detects each loss, relaunches the server and rebuilds its
#                         shards (default 1)
#   --recovery MODE       flr (default: lossless rebuild from the workers' copies) or none
#   --k K                 flr: copies per row, K - 1 servers may be lost at once (default 2)
#   --no-baseline         skip the failure-free run of the same job (--kills 0) that the
#                         report compares with (run when --kills is above 0)
#   --session-timeout MS  ZooKeeper session timeout: how soon a lost server is noticed
#                         (default 2000)
#   --zk HOST:PORT        use this ZooKeeper instead of starting one
#   --job NAME            job name (default demo)
#   --report FILE         also write the JSON report to FILE
#   --logs DIR            keep every process's log in DIR
#   --build-dir DIR       where to build (default ./build)
#   -h, --help            this text
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build"
model=softmax consistency=bsp staleness=2 servers=2 workers=4 shards=0
epochs="" batch="" optimizer="" lr="" rows=1000000 zk="" job=demo report="" logs=""
kills=1 session=2000 recovery=flr k=2 baseline=1

usage() { sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "demo.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
    case "$1" in
    --model) need "$@"; model=$2; shift 2 ;;
    --consistency) need "$@"; consistency=$2; shift 2 ;;
    --staleness) need "$@"; staleness=$2; shift 2 ;;
    --servers) need "$@"; servers=$2; shift 2 ;;
    --workers) need "$@"; workers=$2; shift 2 ;;
    --shards) need "$@"; shards=$2; shift 2 ;;
    --epochs) need "$@"; epochs=$2; shift 2 ;;
    --batch) need "$@"; batch=$2; shift 2 ;;
    --optimizer) need "$@"; optimizer=$2; shift 2 ;;
    --lr) need "$@"; lr=$2; shift 2 ;;
    --rows) need "$@"; rows=$2; shift 2 ;;
    --kills) need "$@"; kills=$2; shift 2 ;;
    --recovery) need "$@"; recovery=$2; shift 2 ;;
    --k) need "$@"; k=$2; shift 2 ;;
    --no-baseline) baseline=0; shift ;;
    --session-timeout) need "$@"; session=$2; shift 2 ;;
    --zk) need "$@"; zk=$2; shift 2 ;;
    --job) need "$@"; job=$2; shift 2 ;;
    --report) need "$@"; report=$2; shift 2 ;;
    --logs) need "$@"; logs=$2; shift 2 ;;
    --build-dir) need "$@"; build=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "demo.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done
case "$model" in
softmax) epochs=${epochs:-5}; batch=${batch:-32} ;;
mlp) epochs=${epochs:-10}; batch=${batch:-16} ;;
ctr) epochs=${epochs:-2}; batch=${batch:-512} ;;
*) echo "demo.sh: --model must be softmax, mlp or ctr (got '$model')" >&2; exit 2 ;;
esac
case "$consistency" in bsp | ssp | asp) ;; *)
    echo "demo.sh: --consistency must be bsp, ssp or asp (got '$consistency')" >&2; exit 2 ;;
esac
case "$recovery" in flr | none) ;; *)
    echo "demo.sh: --recovery must be flr or none (got '$recovery')" >&2; exit 2 ;;
esac
for v in servers workers epochs batch rows staleness shards kills session k; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "demo.sh: --$v must be a whole number (got '${!v}')" >&2; exit 2; }
done
[ "$servers" -ge 1 ] && [ "$workers" -ge 1 ] || { echo "demo.sh: need at least one server and one worker" >&2; exit 2; }
[ -n "$report" ] && report=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")

. "$root/scripts/deps.sh"
flr_install_deps
echo "demo: building flr in $build" >&2
flr_build "$root" "$build"

. "$root/scripts/cluster.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/flr-demo.XXXXXX")
cluster_init "$work" "$build"
if [ -n "$logs" ]; then
    mkdir -p "$logs"
    trap 'cp -f "$work"/*.log "$logs"/ 2>/dev/null || true; cluster_cleanup' EXIT
fi
if [ -n "$zk" ]; then
    ZK=$zk
else
    cluster_zk_start 500
fi
echo "demo: ZooKeeper at $ZK" >&2

wargs=()
if [ "$model" = ctr ]; then
    echo "demo: generating $rows synthetic CTR rows (Criteo format)" >&2
    "$build/flr-datagen" --rows "$rows" --test-rows $((rows / 10 > 1000 ? rows / 10 : 1000)) \
        --out-dir "$work/ctr" >"$work/datagen.log" 2>&1 || { cat "$work/datagen.log" >&2; exit 1; }
    wargs=(--train "$work/ctr/train.tsv" --test "$work/ctr/test.tsv" --truth "$work/ctr/truth.json")
fi

# The coordinator starts the servers itself (local launcher) and starts a replacement
# for each one it loses; --kills makes it kill one now and then, as a drill.
# run_job JOB KILLS REPORT: one whole job; prints the coordinator's report.
run_job() {
local job=$1 kills=$2 report=$3 i name rc ms start
cargs=(--zk "$ZK" --job "$job" --model "$model" --servers "$servers" --workers "$workers"
    --shards "$shards" --consistency "$consistency" --staleness "$staleness" --reset
    --launcher local --server-logs "$work" --kills "$kills" --session-timeout "$session"
    --recovery "$recovery" --k "$k" --report "$report")
[ -n "$optimizer" ] && cargs+=(--optimizer "$optimizer")
[ -n "$lr" ] && cargs+=(--lr "$lr")
shown=0 shownf=0 shownu=0

start=$(date +%s%N)
cluster_spawn coordinator "$build/flr-coordinator" "${cargs[@]}"
for ((i = 0; i < workers; i++)); do
    cluster_spawn "worker$i" "$build/flr-worker" --zk "$ZK" --job "$job" --id "$i" \
        --epochs "$epochs" --batch "$batch" --session-timeout "$session" \
        "${wargs[@]+"${wargs[@]}"}"
done
echo "demo: training $model ($consistency) on $servers servers x $workers workers, $epochs epochs," \
    "$kills server kill(s), recovery $recovery" >&2

# Show worker 0's per-epoch lines and the coordinator's failure events while the job runs.
show_epochs() {
    local n
    if [ "$shownu" = 0 ] && [ -f "$work/coordinator.log" ] &&
        grep -q 'coord.http' "$work/coordinator.log"; then
        echo "demo: dashboard and status at $(grep -o 'http://[0-9.:]*' "$work/coordinator.log" | head -n 1)" \
            "(while the job runs)" >&2
        shownu=1
    fi
    if [ -f "$work/worker0.log" ]; then
        n=$(grep -c 'wrk.epoch' "$work/worker0.log" || true)
        if [ "$n" -gt "$shown" ]; then
            grep 'wrk.epoch' "$work/worker0.log" | sed -n "$((shown + 1)),${n}p" |
                sed 's/.*wrk.epoch /demo: /' >&2
            shown=$n
        fi
    fi
    if [ -f "$work/coordinator.log" ]; then
        n=$(grep -c 'coord.server_\(killed\|lost\|recovered\)' "$work/coordinator.log" || true)
        if [ "$n" -gt "$shownf" ]; then
            grep 'coord.server_\(killed\|lost\|recovered\)' "$work/coordinator.log" |
                sed -n "$((shownf + 1)),${n}p" | sed 's/.*coord.server_[a-z]* /demo: /' >&2
            shownf=$n
        fi
    fi
}
while cluster_alive coordinator; do
    show_epochs
    for name in "${!CLUSTER_PID[@]}"; do
        case "$name" in worker*) ;; *) continue ;; esac
        if ! cluster_alive "$name"; then
            wait "${CLUSTER_PID[$name]}" 2>/dev/null && rc=0 || rc=$?
            if [ "$rc" -ne 0 ]; then
                echo "demo: $name failed (exit $rc):" >&2
                tail -n 5 "$work/$name.log" >&2
                exit 1
            fi
        fi
    done
    sleep 0.5
done
cluster_wait coordinator 5 || true
show_epochs
if [ "$CLUSTER_RC" -ne 0 ]; then
    echo "demo: the coordinator failed:" >&2
    tail -n 20 "$work/coordinator.log" >&2
    exit 1
fi
grep -v '^[0-9]\{4\}-' "$work/coordinator.log" || true
ms=$((($(date +%s%N) - start) / 1000000))
printf '  job time         %d.%d s\n' $((ms / 1000)) $((ms % 1000 / 100))
}
total_start=$(date +%s%N)
main_report=${report:-$work/report.json}
if [ "$kills" -gt 0 ] && [ "$baseline" = 1 ]; then
    echo "demo: first the same job without failures (--kills 0), for comparison" >&2
    run_job "$job-baseline" 0 "$work/baseline.json" >"$work/baseline.txt"
    for f in "$work"/coordinator.log "$work"/worker*.log "$work"/server*.log; do
        [ -f "$f" ] && mv "$f" "${f%.log}.baseline.log"
    done
fi
run_job "$job" "$kills" "$main_report"
if [ -s "$work/baseline.json" ]; then
    python3 - "$main_report" "$work/baseline.json" <<'PY'
import json, sys
r, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
key = "test_accuracy" if "test_accuracy" in r and r.get("model") != "ctr" else "test_auc"
name = "accuracy" if key == "test_accuracy" else "AUC"
fmt = (lambda v: "%.2f%%" % (100 * v)) if key == "test_accuracy" else (lambda v: "%.4f" % v)
lost = sum(f.get("rows_lost", 0) for f in r.get("failures", []))
print("  with %d failure(s): test %s %s, rows lost %d" % (len(r.get("failures", [])), name, fmt(r.get(key, 0)), lost))
print("  without failures:  test %s %s (same job, --kills 0)" % (name, fmt(b.get(key, 0))))
PY
fi
ms=$((($(date +%s%N) - total_start) / 1000000))
printf '  total demo time  %d.%d s\n' $((ms / 1000)) $((ms % 1000 / 100))
[ -n "$report" ] && echo "  report           $report"
exit 0
