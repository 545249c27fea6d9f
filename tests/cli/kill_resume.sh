#!/usr/bin/env bash
# A run killed with SIGKILL at an arbitrary step and resumed must end bitwise equal to an uninterrupted
# run with the same seed, with metrics files holding every epoch exactly once.
# Usage: kill_resume.sh <flatmin binary> <scratch dir> <method>...
set -euo pipefail
flatmin=$1 work=$2
shift 2
rm -rf "$work"
mkdir -p "$work"
args=(--per-class 600 --val-size 500 --test-size 500 --epochs 3 --checkpoint-every 7 --keep-checkpoints 3
      --progress lines --train-eval-size 500 ${KILL_RESUME_EXTRA:-})
# Every column but the wall-clock ones.
without_timings() {
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ /seconds$/ || $i == "ms_per_step") skip[i] = 1 }
           { row = ""; for (i = 1; i <= NF; i++) if (!(i in skip)) row = row $i ","; print row }' "$1"
}
for method in "$@"; do
  a="$work/$method-uninterrupted" b="$work/$method-killed"
  "$flatmin" train --method "$method" "${args[@]}" --out "$a" > "$a.log" 2>&1
  # Kill at an arbitrary moment after the first checkpoint: a random 0-400 ms later. A fast machine may finish
  # a short run first; then try again, sooner (a run that was never killed proves nothing).
  delay_ms=$((RANDOM % 400))
  for attempt in 1 2 3 4 5; do
    rm -rf "$b"
    "$flatmin" train --method "$method" "${args[@]}" --out "$b" > "$b.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 6000); do  # up to 60 s: a loaded machine starts slowly
      compgen -G "$b/checkpoints/step-*.ckpt" > /dev/null && break
      sleep 0.01
    done
    sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"
    kill -9 "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    [ -f "$b/summary.json" ] || break
    delay_ms=$((delay_ms / 4))
  done
  if [ -f "$b/summary.json" ]; then
    echo "FAIL: $method: the run finished before it was killed, $attempt times; the test proved nothing"
    exit 1
  fi
  if ! compgen -G "$b/checkpoints/step-*.ckpt" > /dev/null; then
    echo "FAIL: $method: no checkpoint appeared within 60 s"; cat "$b.log"; exit 1
  fi
  killed_at=$(ls "$b/checkpoints" | tail -n 1)
  rows_before=$(tail -n +2 "$b/metrics.csv" 2> /dev/null | wc -l)
  "$flatmin" train --resume "$b" --progress lines > "$b.resume.log" 2>&1 || { cat "$b.resume.log"; exit 1; }
  cmp "$a/model.ckpt" "$b/model.ckpt" || { echo "FAIL: $method: final weights differ"; exit 1; }
  diff <(without_timings "$a/metrics.csv") <(without_timings "$b/metrics.csv") \
    || { echo "FAIL: $method: metrics differ (duplicated or missing rows?)"; exit 1; }
  echo "ok: $method killed after $killed_at ($rows_before epoch rows written), resumed: weights bitwise equal," \
       "metrics rows equal"
done
