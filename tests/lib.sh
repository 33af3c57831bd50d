#!/usr/bin/env bash
# lib.sh - shared by the integration tests: a private cluster directory, a real ZooKeeper
# on a free port, helpers to run a job and read its report.  Everything started here is
# stopped on exit, also when a test fails.
set -euo pipefail

: "${FLR_BUILDDIR:?run through make check, or set FLR_BUILDDIR and FLR_SRCDIR}"
: "${FLR_SRCDIR:?run through make check, or set FLR_BUILDDIR and FLR_SRCDIR}"
. "$FLR_SRCDIR/scripts/cluster.sh"

T=$(mktemp -d "${TMPDIR:-/tmp}/flr-it.XXXXXX")
cluster_init "$T" "$FLR_BUILDDIR"
B=$FLR_BUILDDIR

# need_fashion_mnist: skips the test (exit 77) when the dataset package is missing.
need_fashion_mnist() {
    if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
        echo "SKIP: dataset-fashion-mnist is not installed"
        exit 77
    fi
}

# need_tool CMD PACKAGE: CMD is installed, or the test fails naming the Debian package that
# provides it (scripts/deps.sh installs it); with FLR_ALLOW_SKIP=1 it skips instead.
need_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "${FLR_ALLOW_SKIP:-0}" = 1 ]; then
        echo "SKIP: $1 not found (Debian package $2)"
        exit 77
    fi
    echo "FAIL: $1 not found: install the Debian package $2 (scripts/deps.sh does), or set FLR_ALLOW_SKIP=1 to skip" >&2
    exit 1
}

fail() {
    echo "FAIL: $*" >&2
    local f
    for f in "$T"/*.log "$T"/*/*.log; do
        [ -f "$f" ] || continue
        echo "----- ${f#"$T"/} (last lines)" >&2
        tail -n 15 "$f" >&2
    done
    exit 1
}

# exits_ok SECS NAME...: waits up to SECS for each named process to exit, and fails the
# test unless each exited with status 0.
exits_ok() {
    local secs=$1 n
    shift
    for n in "$@"; do
        cluster_wait "$n" "$secs" || fail "$n did not exit in time"
        [ "$CLUSTER_RC" -eq 0 ] || fail "$n exited with $CLUSTER_RC"
    done
}

# json_num FILE KEY: the first numeric value of "KEY" in a JSON file.
json_num() {
    grep -o "\"$2\": *-\?[0-9][0-9.eE+-]*" "$1" | head -n 1 | sed 's/.*: *//'
}

# ge A B: true when A >= B (floating point).
ge() {
    awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'
}

# oracle_check PREFIX: the exactly-once oracle (--model oracle, --oracle-out PREFIX):
# compares PREFIX.final, the parameters at the end, with the sums of every worker's
# PREFIX.w*.pushed, exactly.  Prints the count checked and wrong; fails when any is wrong.
oracle_check() {
    awk -v prefix="$1" '
        FILENAME ~ /\.pushed$/ { want[$1 " " $2 " " $3] -= $4; next }
        { got[$1 " " $2 " " $3] = $4 }
        END {
            n = 0; bad = 0
            for (k in want) { n++; if (got[k] + 0 != want[k]) { bad++; if (bad <= 5) print "  " k ": got " got[k] + 0 ", want " want[k] } }
            for (k in got) if (!(k in want) && got[k] + 0 != 0) { bad++; if (bad <= 10) print "  " k ": got " got[k] ", want 0" }
            printf "%s: %d parameters checked, %d wrong\n", prefix, n, bad
            exit bad > 0
        }' "$1".w*.pushed "$1".final
}

# run_job JOB SERVERS WORKERS "COORD ARGS" "WORKER ARGS": runs a whole job and waits for it.
# The report is $T/JOB.json.
run_job() {
    local job=$1 ns=$2 nw=$3 cargs=$4 wargs=$5 i
    # shellcheck disable=SC2086
    cluster_spawn "$job-coord" "$B/flr-coordinator" --zk "$ZK" --job "$job" --servers "$ns" \
        --workers "$nw" --report "$T/$job.json" --session-timeout 2000 $cargs
    for ((i = 0; i < ns; i++)); do
        cluster_spawn "$job-s$i" "$B/flr-server" --zk "$ZK" --job "$job" --id "$i" \
            --session-timeout 2000
    done
    for ((i = 0; i < nw; i++)); do
        # shellcheck disable=SC2086
        cluster_spawn "$job-w$i" "$B/flr-worker" --zk "$ZK" --job "$job" --id "$i" \
            --session-timeout 2000 $wargs
    done
    cluster_wait "$job-coord" 600 || fail "$job: coordinator did not finish"
    [ "$CLUSTER_RC" -eq 0 ] || fail "$job: coordinator exited with $CLUSTER_RC"
    for ((i = 0; i < nw; i++)); do
        cluster_wait "$job-w$i" 30 || fail "$job: worker $i did not exit"
        [ "$CLUSTER_RC" -eq 0 ] || fail "$job: worker $i exited with $CLUSTER_RC"
    done
    for ((i = 0; i < ns; i++)); do
        cluster_wait "$job-s$i" 30 || fail "$job: server $i did not exit after the job"
        [ "$CLUSTER_RC" -eq 0 ] || fail "$job: server $i exited with $CLUSTER_RC"
    done
    [ -s "$T/$job.json" ] || fail "$job: no report"
}

cluster_zk_start 200 || fail "could not start ZooKeeper"
