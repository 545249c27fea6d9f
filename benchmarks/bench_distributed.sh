#!/usr/bin/env bash
# Several processes against one, measured side by side: whole `flatmin train` runs of the small CNN at batch
# 128, one thread per process, in interleaved rounds (round r runs every row once); per row the median over
# rounds of mean_ms_per_step (training steps only) and of the allreduce time per step (rank 0's
# collective_seconds / steps: the gradient sum and the per-step stop flag).
#   benchmarks/bench_distributed.sh [build/flatmin] [rounds]
set -euo pipefail
flatmin=${1:-build/flatmin} rounds=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--model cnn --batch-size 128 --per-class 640 --val-size 100 --test-size 100 --train-eval-size 100 --epochs 1
        --threads 1 --progress quiet --no-checkpoints --no-save-model --lr-schedule constant)
declare -A cmd=(
  [sgd-1]="train --method sgd"
  [nso-1]="train --method nso"
  [sgd-2-data]="launch --nproc 2 -- train --method sgd --parallel data"
  [nso-2-perturbation]="launch --nproc 2 -- train --method nso --parallel perturbation"
  [nso-2-data]="launch --nproc 2 -- train --method nso --parallel data"
)
rows=(sgd-1 nso-1 sgd-2-data nso-2-perturbation nso-2-data)
for r in $(seq 1 "$rounds"); do
  for row in "${rows[@]}"; do
    # shellcheck disable=SC2086
    "$flatmin" ${cmd[$row]} "${common[@]}" --out "$work/$row-$r" 2> /dev/null
  done
done
python3 - "$work" "$rounds" "${rows[@]}" <<'PY'
import json, statistics, sys
work, rounds, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def med(row, f):
    return statistics.median(f(json.load(open(f"{work}/{row}-{r}/summary.json"))) for r in range(1, rounds + 1))
sgd = med("sgd-1", lambda s: s["mean_ms_per_step"])
print(f"| run | processes | ms/step | x SGD (1 process) | allreduce ms/step | allreduce share |")
print(f"|---|---:|---:|---:|---:|---:|")
for row in rows:
    ms = med(row, lambda s: s["mean_ms_per_step"])
    procs = med(row, lambda s: s.get("processes", 1))
    ar = med(row, lambda s: 1000 * s.get("collective_seconds", 0) / s["steps"])
    print(f"| {row} | {procs} | {ms:.2f} | {ms / sgd:.2f} | {ar:.3f} | {100 * ar / ms:.1f}% |")
PY
