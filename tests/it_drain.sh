#!/usr/bin/env bash
# Draining a live server moves its shards without losing anything.  The same BSP job runs
# twice with a fixed seed: once untouched, once with `flrctl drain 0` part-way.  In the
# second run the coordinator freezes server 0's shards, starts server 2 (local launcher),
# which copies them (rows, optimizer slots, stamps and the pushes held for the open
# clock) from server 0 before serving; server 0 then stops.  BSP sums each clock in
# worker order, so a lossless move ends with the identical model: the two runs must
# report bit-for-bit the same test accuracy and loss.
. "$FLR_SRCDIR/tests/lib.sh"
need_fashion_mnist

echo "drill-token-$$" >"$T/token"
run() { # JOB [drain]
    local job=$1 i
    cluster_spawn "$job" "$B/flr-coordinator" --zk "$ZK" --job "$job" --servers 2 --workers 2 \
        --model softmax --report "$T/$job.json" --launcher local --session-timeout 2000 \
        --server-logs "$T/$job" --http-token-file "$T/token"
    mkdir -p "$T/$job"
    for i in 0 1; do
        cluster_spawn "$job-w$i" "$B/flr-worker" --zk "$ZK" --job "$job" --id $i --epochs 2 \
            --batch 32 --session-timeout 2000
    done
    if [ "${2:-}" = drain ]; then
        wait_for 60 grep -q 'coord.job_running' "$T/$job.log" || fail "$job did not start"
        sleep 2
        "$B/flrctl" --zk "$ZK" --job "$job" --token-file "$T/token" drain 0 ||
            fail "flrctl drain failed"
        wait_for 30 grep -q 'coord.server_drained' "$T/$job.log" || fail "server 0 was not drained"
    fi
    cluster_wait "$job" 300 || fail "$job did not finish"
    [ "$CLUSTER_RC" -eq 0 ] || fail "$job: coordinator exited with $CLUSTER_RC"
    exits_ok 30 "$job-w0" "$job-w1"
}
run plain
run moved drain
grep -q 'srv.moved' "$T/moved/server2.log" || fail "server 2 did not copy the shards"
grep -q 'srv.shutdown' "$T/moved/server0.log" || fail "server 0 was not asked to stop"
grep -q 'srv.exit' "$T/moved/server0.log" || fail "server 0 did not stop cleanly"
tr -d ' \n' <"$T/moved.json" | grep -q '"failures":\[\]' || fail "a drain was reported as a failure"
a=$(json_num "$T/plain.json" test_accuracy) b=$(json_num "$T/moved.json" test_accuracy)
la=$(json_num "$T/plain.json" test_loss) lb=$(json_num "$T/moved.json" test_loss)
echo "without drain: accuracy $a loss $la; with drain: accuracy $b loss $lb"
echo "moved: $(grep -o 'shard [0-9]*: [0-9]* rows and [0-9]* held pushes copied.*' "$T/moved/server2.log" | head -n 4 | tr '\n' ';')"
[ "$a" = "$b" ] && [ "$la" = "$lb" ] || fail "the drained run differs from the untouched one"
echo "PASS"
