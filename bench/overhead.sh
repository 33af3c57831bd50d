#!/usr/bin/env bash
# overhead.sh - what recovery = flr costs while nothing fails: training throughput and
# bytes on the wire, recovery none against flr, on the same jobs in the same run, and the
# memory the workers' copies and update logs take.
#
# Jobs (2 servers x 4 workers, local cluster, no kills):
#   mlp-bsp-adam  Fashion-MNIST MLP, BSP, Adam (copies need REPLICATE: slots)
#   mlp-bsp-sgd   the same with SGD (the pulled rows are the copies)
#   ctr-asp       sparse logistic regression on synthetic CTR data, ASP, Adagrad
# Each job runs --rounds times per mode, alternating none and flr; the best round counts.
#
#   bench/overhead.sh [--build-dir DIR] [--rounds N] [--jobs "mlp-bsp-adam ctr-asp"]
#
# Throughput is the samples of all workers over the slowest worker's training time.
# Bytes are every message the workers sent and received: pulls, pushes, clocks, and the
# REPLICATE traffic to their recovery endpoints.  Goal: under 3% throughput and under
# 10% extra traffic on the MLP (BSP).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${FLR_BUILDDIR:-$here/build}
rounds=2 jobs="mlp-bsp-adam mlp-bsp-sgd ctr-asp"
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "overhead.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[ -x "$build/flr-coordinator" ] || { echo "overhead.sh: no flr-coordinator in $build (build first)" >&2; exit 1; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    { echo "overhead.sh: needs Debian's dataset-fashion-mnist" >&2; exit 1; }

. "$here/scripts/cluster.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/flr-overhead.XXXXXX")
cluster_init "$work" "$build"
cluster_zk_start 500
"$build/flr-datagen" --rows 400000 --test-rows 1000 --seed 4 --out-dir "$work/ctr" >"$work/datagen.log" 2>&1

# run NAME MODE: one job; prints "samples_per_s bytes peak_copy_bytes peak_log_bytes".
run() {
    local name=$1 mode=$2 job="$1-$2-$RANDOM" i cargs wargs
    case "$name" in
    mlp-bsp-adam) cargs="--model mlp --consistency bsp --optimizer adam"; wargs="--epochs 1 --batch 16" ;;
    mlp-bsp-sgd) cargs="--model mlp --consistency bsp --optimizer sgd --lr 0.1"; wargs="--epochs 1 --batch 16" ;;
    ctr-asp) cargs="--model ctr --consistency asp"
        wargs="--epochs 1 --batch 512 --train $work/ctr/train.tsv --test $work/ctr/test.tsv" ;;
    *) echo "overhead.sh: unknown job '$name'" >&2; exit 2 ;;
    esac
    # shellcheck disable=SC2086
    cluster_spawn "$job" "$build/flr-coordinator" --zk "$ZK" --job "$job" --servers 2 --workers 4 \
        --launcher local --recovery "$mode" --report "$work/$job.json" $cargs
    for i in 0 1 2 3; do
        # shellcheck disable=SC2086
        cluster_spawn "$job-w$i" "$build/flr-worker" --zk "$ZK" --job "$job" --id $i --evaluate no $wargs
    done
    cluster_wait "$job" 900 || { echo "overhead.sh: $job did not finish" >&2; exit 1; }
    [ "$CLUSTER_RC" -eq 0 ] || { echo "overhead.sh: $job failed (see $work/$job.log)" >&2; exit 1; }
    jq -r '[.worker_results[] | .samples] as $s | [.worker_results[] | .train_seconds] as $t |
        [.worker_results[] | .traffic] as $x |
        "\(($s | add) / ($t | max)) \([$x[] | .sent_bytes + .received_bytes + .replicated_in_bytes] | add)
         \([$x[] | .peak_copy_bytes] | max) \([$x[] | .peak_log_bytes] | max)"' "$work/$job.json" | tr '\n' ' '
    echo
}

printf '%-13s %5s %12s %8s %12s %8s %12s %12s\n' job mode samples_per_s x_none wire_MB x_none \
    copies_MB log_MB
for name in $jobs; do
    best_none="" best_flr=""
    for ((r = 0; r < rounds; r++)); do
        for mode in none flr; do
            line=$(run "$name" "$mode")
            eval "cur=\$best_$mode"
            if [ -z "$cur" ] || awk -v a="${line%% *}" -v b="${cur%% *}" 'BEGIN { exit !(a > b) }'; then
                eval "best_$mode=\$line"
            fi
        done
    done
    for mode in none flr; do
        eval "set -- \$best_$mode"
        read -r n0 b0 _ _ <<<"$best_none"
        printf '%-13s %5s %12.0f %8.3f %12.1f %8.3f %12.2f %12.2f\n' "$name" "$mode" "$1" \
            "$(awk -v a="$1" -v b="$n0" 'BEGIN { print a / b }')" "$(awk -v a="$2" 'BEGIN { print a / 1e6 }')" \
            "$(awk -v a="$2" -v b="$b0" 'BEGIN { print a / b }')" \
            "$(awk -v a="$3" 'BEGIN { print a / 1048576 }')" "$(awk -v a="$4" 'BEGIN { print a / 1048576 }')"
    done
done
