#!/usr/bin/env bash
# Stop anywhere, resume, end bitwise where an uninterrupted run ends, through the command line: each run is
# stopped at a chosen instant (FLATMIN_STOP_AT, include/flatmin/core/stop_points.h) by SIGTERM (exit 130,
# a checkpoint, the resume hint) or SIGKILL (no goodbye: the newest intact checkpoint), resumed with
# `flatmin train --resume`, and its model.ckpt compared byte for byte with the uninterrupted run's, its
# metrics.csv row by row (timings aside: every epoch exactly once). The instants: after the first step,
# after an epoch's last step (before its scoring), before the scoring, before the epoch measurements, a
# kill between two checkpoints and one inside a checkpoint write; for sgd, nso and sam; then one
# perturbation-parallel run in two processes. Every instant of a run is covered in process by
# tests/training/test_stop_anywhere.cpp.
# Usage: stop_anywhere.sh <flatmin binary> <scratch dir>
set -uo pipefail
flatmin=$1 work=$2
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
# 50 training examples in batches of 16: 4 steps an epoch (the last one short); 2 epochs; a checkpoint after
# every step (the 4th write is epoch 1's end).
args=(--model mlp --width 16 --per-class 5 --val-size 20 --test-size 50 --train-eval-size 20 --batch-size 16
      --epochs 2 --checkpoint-every 1 --keep-checkpoints 2 --geometry-every 1 --geometry-measures grad_norm
      --geometry-examples 20 --threads 1 --progress lines --seed 7)
untimed() {
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ /seconds$/ || $i == "ms_per_step") skip[i] = 1 }
           { row = ""; for (i = 1; i <= NF; i++) if (!(i in skip)) row = row $i ","; print row }' "$1"
}
same_run() {  # same_run REFERENCE OTHER WHAT
  cmp -s "$1/model.ckpt" "$2/model.ckpt" || fail "$3: the final weights differ from the uninterrupted run's"
  diff <(untimed "$1/metrics.csv") <(untimed "$2/metrics.csv") > /dev/null || fail "$3: metrics.csv differs"
}

instants=0
for method in sgd nso sam; do
  full=$work/$method-full
  "$flatmin" train "${args[@]}" --method "$method" --out "$full" > "$full.log" 2>&1 || { cat "$full.log"; fail "$method run"; }
  grep -q '"steps": 8,' "$full/summary.json" || fail "$method: expected 8 steps (2 epochs of 4)"
  for instant in step@1 step@4 eval@1 measure@1 step@6:kill checkpoint@4:kill; do
    dir=$work/$method-${instant//[@:]/-}
    FLATMIN_STOP_AT=$instant "$flatmin" train "${args[@]}" --method "$method" --out "$dir" > "$dir.log" 2>&1
    status=$?
    case $instant in
      *:kill) [ "$status" -eq 137 ] || { cat "$dir.log"; fail "$method $instant: exit $status, expected 137 (SIGKILL)"; } ;;
      *) [ "$status" -eq 130 ] || { cat "$dir.log"; fail "$method $instant: exit $status, expected 130"; }
         grep -q "Resume with:  flatmin train --resume $dir" "$dir.log" || fail "$method $instant: no resume hint" ;;
    esac
    [ ! -e "$dir/summary.json" ] || fail "$method $instant: the stopped run wrote summary.json"
    "$flatmin" train --resume "$dir" --progress lines > "$dir.resume.log" 2>&1 || { cat "$dir.resume.log"; fail "$method $instant: resume"; }
    same_run "$full" "$dir" "$method $instant"
    instants=$((instants + 1))
  done
done
echo "ok: $instants stops (sgd, nso, sam), each resumed bitwise equal to the uninterrupted run"

# Perturbation-parallel NSO in two processes, stopped after epoch 1's last step: both ranks stop at that step.
pargs=("${args[@]}" --method nso --k 2 --parallel perturbation)
"$flatmin" launch --nproc 2 -- train "${pargs[@]}" --out "$work/pp-full" > "$work/pp-full.log" 2>&1 ||
  { cat "$work/pp-full.log"; fail "perturbation-parallel run"; }
FLATMIN_STOP_AT=step@4 "$flatmin" launch --nproc 2 -- train "${pargs[@]}" --out "$work/pp-stopped" > "$work/pp-stopped.log" 2>&1
status=$?
[ "$status" -eq 130 ] || { cat "$work/pp-stopped.log"; fail "perturbation-parallel stop: exit $status, expected 130"; }
"$flatmin" launch --nproc 2 -- train --resume "$work/pp-stopped" --progress lines > "$work/pp-resume.log" 2>&1 ||
  { cat "$work/pp-resume.log"; fail "perturbation-parallel resume"; }
same_run "$work/pp-full" "$work/pp-stopped" "perturbation-parallel step@4"
echo "ok: perturbation-parallel NSO stopped after an epoch's last step, resumed bitwise equal"
