#!/usr/bin/env bash
# Softmax regression also trains under SSP (staleness 2) and ASP, and the MLP under BSP.
. "$FLR_SRCDIR/tests/lib.sh"

need_fashion_mnist
run_job ssp 2 3 "--model softmax --consistency ssp --staleness 2" "--epochs 1 --batch 64"
acc=$(json_num "$T/ssp.json" test_accuracy)
echo "softmax SSP(2), 1 epoch: test accuracy $acc"
ge "$acc" 0.75 || fail "SSP: test accuracy $acc is below 0.75"

run_job asp 2 3 "--model softmax --consistency asp" "--epochs 1 --batch 64"
acc=$(json_num "$T/asp.json" test_accuracy)
echo "softmax ASP, 1 epoch: test accuracy $acc"
ge "$acc" 0.75 || fail "ASP: test accuracy $acc is below 0.75"

run_job mlp 2 2 "--model mlp --consistency bsp --hidden 32" "--epochs 1 --batch 64"
acc=$(json_num "$T/mlp.json" test_accuracy)
echo "mlp(32) BSP, 1 epoch: test accuracy $acc"
ge "$acc" 0.78 || fail "MLP: test accuracy $acc is below 0.78"
echo "PASS"
