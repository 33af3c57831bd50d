#!/usr/bin/env bash
# The exactly-once oracle (docs/recovery.md): the oracle model pushes small integers, the
# optimizer is SGD with lr 1, so every parameter must end at exactly minus the sum of what
# the workers pushed for it, whatever the order.  Servers are SIGKILLed at seeded random
# points (one; then two at once with k = 3) under BSP, SSP and ASP, over a dense and a
# sparse table.  An update lost or applied twice shows as a wrong integer.
#
# FLR_SOAK=N runs N rounds of every case with further seeds (make soak).
. "$FLR_SRCDIR/tests/lib.sh"
echo "op-$RANDOM$RANDOM$RANDOM" >"$T/token" # operator commands (kill-server) need it

"$B/flr-datagen" --rows 24000 --test-rows 1000 --seed 5 --out-dir "$T/ctr" \
    >"$T/datagen.log" 2>&1 || fail "flr-datagen failed"

# run JOB CONSISTENCY SERVERS K KILLS SEED: one job; KILLS servers are killed at once (by
# flrctl kill-server, SIGKILL through the coordinator) at a seeded random moment.
run() {
    local job=$1 cons=$2 ns=$3 k=$4 kills=$5 seed=$6 i nw=3
    RANDOM=$seed
    cluster_spawn "$job-coord" "$B/flr-coordinator" --zk "$ZK" --job "$job" --servers "$ns" \
        --workers $nw --model oracle --optimizer sgd --lr 1 --consistency "$cons" \
        --staleness 2 --recovery flr --k "$k" --launcher local --server-logs "$T" \
        --report "$T/$job.json" --session-timeout 2000 --http-token-file "$T/token"
    for ((i = 0; i < nw; i++)); do
        cluster_spawn "$job-w$i" "$B/flr-worker" --zk "$ZK" --job "$job" --id $i \
            --train "$T/ctr/train.tsv" --epochs 6 --batch 64 --evaluate no \
            --oracle-out "$T/$job" --session-timeout 2000
    done
    # A seeded random moment: once the slowest worker has done AT iterations (of 750).
    local at=$((30 + RANDOM % 300))
    wait_for 120 sh -c "'$B/flrctl' --zk '$ZK' --job '$job' status --json 2>/dev/null |
        jq -e '[.workers[].clock] | length == $nw and min >= $at' >/dev/null" ||
        fail "$job: the workers did not reach iteration $at"
    local first=$((RANDOM % ns))
    for ((i = 0; i < kills; i++)); do
        "$B/flrctl" --zk "$ZK" --job "$job" --token-file "$T/token" kill-server $(((first + i) % ns)) >>"$T/$job-kill.log" 2>&1 ||
            fail "$job: flrctl kill-server failed"
    done
    cluster_wait "$job-coord" 300 || fail "$job: coordinator did not finish"
    [ "$CLUSTER_RC" -eq 0 ] || fail "$job: coordinator exited with $CLUSTER_RC"
    for ((i = 0; i < nw; i++)); do
        cluster_wait "$job-w$i" 60 || fail "$job: worker $i did not exit"
        [ "$CLUSTER_RC" -eq 0 ] || fail "$job: worker $i exited with $CLUSTER_RC"
    done
    python3 - "$T/$job.json" "$kills" <<'PY' || fail "$job: the report's failures are wrong"
import json, sys
r = json.load(open(sys.argv[1]))
f = r["failures"]
assert len(f) == int(sys.argv[2]), f
for x in f:
    assert x["recovery"] == "flr" and x["rows_lost"] == 0, x
    print("  server %d lost: detect %d ms, recover %d ms, %d rows rebuilt, %d lost"
          % (x["server"], x["detect_ms"], x["recover_ms"], x["rows_rebuilt"], x["rows_lost"]))
PY
    oracle_check "$T/$job" || fail "$job: the final parameters are not the sums of the pushes"
}

rounds=${FLR_SOAK:-1}
for ((r = 0; r < rounds; r++)); do
    run "bsp$r" bsp 2 2 1 $((11 + r))
    run "asp$r" asp 2 2 1 $((23 + r))
    run "ssp$r" ssp 3 3 2 $((37 + r))
done
echo "PASS"
