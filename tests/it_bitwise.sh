#!/usr/bin/env bash
# The bitwise oracle (docs/recovery.md): a BSP job with a fixed seed ends with the same
# parameters, bit for bit, whether or not a server was SIGKILLed during it and its shards
# rebuilt from the workers (recovery flr).  Twice: softmax with SGD (the workers' pulled
# rows are the copies) and the MLP with Adam (copies come from REPLICATE, with the slots).
. "$FLR_SRCDIR/tests/lib.sh"
echo "op-$RANDOM$RANDOM$RANDOM" >"$T/token" # operator commands (kill-server) need it

need_fashion_mnist

# run JOB KILL MODEL OPTIMIZER EPOCHS: one BSP job of 2 servers x 3 workers; KILL = 1 kills
# server 1 once the workers are some way in.  Worker 0 writes the final parameters to
# $T/JOB.final.  The job must outlast the kill: the workers publish their clocks once a
# second, and an epoch takes 1 to 3 s, so the models train 3 and 2 epochs.
run() {
    local job=$1 kill=$2 model=$3 opt=$4 epochs=$5 i
    cluster_spawn "$job-coord" "$B/flr-coordinator" --zk "$ZK" --job "$job" --servers 2 \
        --workers 3 --model "$model" --hidden 32 --optimizer "$opt" --consistency bsp \
        --recovery flr --launcher local --server-logs "$T" --report "$T/$job.json" \
        --http-token-file "$T/token" \
        --session-timeout 2000
    for i in 0 1 2; do
        cluster_spawn "$job-w$i" "$B/flr-worker" --zk "$ZK" --job "$job" --id $i --epochs "$epochs" \
            --batch 64 --evaluate no --oracle-out "$T/$job" --session-timeout 2000
    done
    if [ "$kill" = 1 ]; then
        wait_for 120 sh -c "'$B/flrctl' --zk '$ZK' --job '$job' status --json 2>/dev/null |
            jq -e '[.workers[].clock] | min >= 60' >/dev/null" || fail "$job: training did not get going"
        "$B/flrctl" --zk "$ZK" --job "$job" --token-file "$T/token" kill-server 1 >"$T/$job-kill.log" 2>&1 ||
            fail "$job: flrctl kill-server failed"
    fi
    cluster_wait "$job-coord" 300 || fail "$job: coordinator did not finish"
    [ "$CLUSTER_RC" -eq 0 ] || fail "$job: coordinator exited with $CLUSTER_RC"
    exits_ok 60 "$job-w0" "$job-w1" "$job-w2"
    [ -s "$T/$job.final" ] || fail "$job: worker 0 wrote no final parameters"
}

for c in "softmax sgd 3" "mlp adam 2"; do
    set -- $c
    run "$1-clean" 0 "$1" "$2" "$3"
    run "$1-kill" 1 "$1" "$2" "$3"
    n=$(jq '.failures | length' "$T/$1-kill.json")
    lost=$(jq '[.failures[].rows_lost] | add' "$T/$1-kill.json")
    [ "$n" -eq 1 ] || fail "$1: expected one failure in the report, found $n"
    [ "$lost" -eq 0 ] || fail "$1: $lost rows lost"
    # The replacement rebuilt the lost server's four shards together: it started every
    # rebuild before it installed any.
    awk '/srv\.rebuild .*opened/ { o[$2] = NR; n[$2]++ }
         /srv\.rebuilt/ && !($2 in r) { r[$2] = NR }
         END { ok = 0; for (p in r) { if (o[p] > r[p]) exit 1; if (n[p] > 1) ok = 1 }; exit !ok }' \
        "$T/server1.log" || fail "$1: the replacement did not rebuild its shards together"
    if ! cmp -s "$T/$1-clean.final" "$T/$1-kill.final"; then
        # diff exits 1 on a difference, or dies of SIGPIPE: neither may end the test here
        diff "$T/$1-clean.final" "$T/$1-kill.final" | head -n 5 >&2 || true
        echo "$(diff "$T/$1-clean.final" "$T/$1-kill.final" | grep -c '^<') parameters differ;" \
            "the rebuild, as the servers logged it:" >&2
        grep -h 'srv\.\(rebuil\|replay\)' "$T"/server*.log >&2 || true
        fail "$1 ($2): the parameters after the kill differ from the failure-free run"
    fi
    echo "$1 ($2): $(wc -l <"$T/$1-clean.final") parameters bitwise identical with and without the kill;" \
        "$(jq -c '.failures[0] | {detect_ms, recover_ms, rows_rebuilt, rows_lost}' "$T/$1-kill.json")"
done
echo "PASS"
