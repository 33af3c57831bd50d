#!/usr/bin/env bash
# A worker is SIGKILLed during BSP training and removed; it is restarted with the same id,
# readmitted, catches up with the job's clock and trains its partition to the end.
. "$FLR_SRCDIR/tests/lib.sh"

need_fashion_mnist
job=rejoin
cluster_spawn coord "$B/flr-coordinator" --zk "$ZK" --job $job --servers 2 --workers 3 \
    --model softmax --report "$T/$job.json" --launcher local --session-timeout 2000 \
    --server-logs "$T"
for i in 0 1 2; do
    cluster_spawn "w$i" "$B/flr-worker" --zk "$ZK" --job $job --id $i --epochs 3 --batch 32 \
        --session-timeout 2000
done
wait_for 60 grep -q 'coord.job_running' "$T/coord.log" || fail "job did not start"
sleep 2
cluster_kill w2 KILL
wait_for 20 grep -q 'coord.worker_lost' "$T/coord.log" || fail "the lost worker was not removed"
cluster_spawn w2b "$B/flr-worker" --zk "$ZK" --job $job --id 2 --epochs 3 --batch 32 \
    --session-timeout 2000
wait_for 20 grep -q 'coord.worker_rejoined' "$T/coord.log" || fail "the restarted worker was not readmitted"
wait_for 20 grep -q 'rejoins job' "$T/w2b.log" || fail "the restarted worker did not rejoin at the job's clock"
cluster_wait coord 300 || fail "training did not finish"
[ "$CLUSTER_RC" -eq 0 ] || fail "coordinator exited with $CLUSTER_RC"
exits_ok 30 w0 w1 w2b
tr -d ' \n' <"$T/$job.json" | grep -q '"workers_lost":\[\]' || fail "the rejoined worker is still reported lost"
tr -d ' \n' <"$T/$job.json" | grep -q '"rejoined_at_clock":[1-9]' || fail "no worker result says where it rejoined"
echo "rejoined: $(grep -o 'rejoins job.*' "$T/w2b.log")"
echo "PASS"
