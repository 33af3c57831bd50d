#!/usr/bin/env bash
# A short BSP training run of softmax regression on Fashion-MNIST over a real ZooKeeper,
# 2 servers and 3 workers: the job finishes, every process exits cleanly, and the test
# accuracy clears a lower bar than the full demo's (one epoch instead of three).
. "$FLR_SRCDIR/tests/lib.sh"

need_fashion_mnist
run_job bsp 2 3 "--model softmax --consistency bsp" "--epochs 1 --batch 64"
acc=$(json_num "$T/bsp.json" test_accuracy)
echo "softmax BSP, 1 epoch: test accuracy $acc"
ge "$acc" 0.78 || fail "test accuracy $acc is below 0.78"
grep -q '"failures": \[\]' "$T/bsp.json" || fail "report lacks an empty failures array"
for k in model epochs wall_seconds servers workers consistency; do
    grep -q "\"$k\"" "$T/bsp.json" || fail "report lacks $k"
done
echo "PASS"
