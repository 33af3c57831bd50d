#!/usr/bin/env bash
# A worker is SIGKILLed during BSP training. Its session expires, the coordinator removes
# it, the servers stop counting its clock, and the other workers train on to the end: BSP
# does not wait forever for a dead worker. The report names the lost worker.
. "$FLR_SRCDIR/tests/lib.sh"

need_fashion_mnist
job=wloss
cluster_spawn coord "$B/flr-coordinator" --zk "$ZK" --job $job --servers 2 --workers 3 \
    --model softmax --consistency bsp --report "$T/$job.json"
for i in 0 1; do
    cluster_spawn "s$i" "$B/flr-server" --zk "$ZK" --job $job --id $i
done
for i in 0 1 2; do
    cluster_spawn "w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --epochs 2 --batch 32 \
        --session-timeout 2000
done
wait_for 60 grep -q 'coord.job_running' "$T/coord.log" || fail "job did not start"
sleep 1 # let training get under way: the kill should land mid-iteration
cluster_kill w2 KILL
wait_for 20 grep -q 'coord.worker_lost' "$T/coord.log" || fail "the coordinator did not notice the lost worker"
wait_for 10 grep -q 'srv.worker_removed' "$T/s0.log" || fail "server 0 did not stop counting the lost worker"
cluster_wait coord 300 || fail "training stalled after the worker was lost"
[ "$CLUSTER_RC" -eq 0 ] || fail "coordinator exited with $CLUSTER_RC"
exits_ok 30 w0 w1 s0 s1
grep -q '"workers_lost": \[' "$T/$job.json" || fail "report lacks workers_lost"
tr -d ' \n' <"$T/$job.json" | grep -q '"workers_lost":\[2\]' || fail "report does not name worker 2 as lost"
acc=$(json_num "$T/$job.json" test_accuracy)
echo "BSP went on without worker 2: test accuracy $acc"
ge "$acc" 0.75 || fail "accuracy $acc below 0.75"
echo "PASS"
