#!/usr/bin/env bash
# While a real job trains, a client sends server 0 malformed and misaddressed requests of
# every kind (garbage bytes, wrong magic, wrong job, shard not owned, stale epoch, unknown
# table, key out of range, wrong value length, NaN and Inf gradients, unsorted keys).
# Each gets the right error reply, the server counts them, and training still finishes
# with a sound model (nothing was corrupted).
. "$FLR_SRCDIR/tests/lib.sh"

need_fashion_mnist
job=bad
cluster_spawn coord "$B/flr-coordinator" --zk "$ZK" --job $job --servers 2 --workers 2 \
    --model softmax --consistency asp --report "$T/$job.json"
for i in 0 1; do
    cluster_spawn "s$i" "$B/flr-server" --zk "$ZK" --job $job --id $i
    cluster_spawn "w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --epochs 2
done
wait_for 60 grep -q 'coord.job_running' "$T/coord.log" || fail "job did not start"
"$B/tests/badreq" "$ZK" $job 0 >"$T/badreq.out" 2>&1 || { cat "$T/badreq.out"; fail "bad requests not answered as expected"; }
cat "$T/badreq.out"
cluster_alive w0 || cluster_wait w0 0
cluster_wait coord 300 || fail "job did not finish"
[ "$CLUSTER_RC" -eq 0 ] || fail "coordinator failed"
acc=$(json_num "$T/$job.json" test_accuracy)
echo "after the bad requests: test accuracy $acc"
ge "$acc" 0.78 || fail "accuracy $acc below 0.78: the shard may have been corrupted"
grep -q 'srv.reject' "$T/s0.log" || fail "server 0 did not log the rejections"
echo "PASS"
