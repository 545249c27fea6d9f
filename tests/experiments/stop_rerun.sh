#!/usr/bin/env bash
# A sweep stopped at chosen instants and run again ends with the same results as an uninterrupted one: the
# same selection, and every run's metrics (timings aside) and flatness measurements equal. The instants
# (FLATMIN_STOP_AT, include/flatmin/core/stop_points.h), chosen, not left to a timer's luck:
#  - every training run gets SIGTERM after its 8th step: the fine-tuning runs' last step of epoch 1, before
#    its scoring (the pretraining's mid-epoch); the sweep resumes each from its checkpoint;
#  - the sweep itself is SIGKILLed just after starting its 2nd measurement: its children get SIGTERM (the
#    measurement dies, runs in training checkpoint) and the rerun waits for them, then finishes everything.
#   stop_rerun.sh FLATMIN WORKDIR EXPERIMENT
set -euo pipefail
cli=$1 work=$2 experiment=$3
rm -rf "$work"
mkdir -p "$work"
sweep() { "$cli" sweep "$experiment" --jobs 2 --progress lines --out "$@"; }

sweep "$work/full" >"$work/full.log" 2>&1 || { echo "uninterrupted sweep failed:"; tail -20 "$work/full.log"; exit 1; }

status=0
FLATMIN_STOP_AT=step@8,sweep-measure@2:kill sweep "$work/killed" >"$work/killed.log" 2>&1 || status=$?
[ "$status" = 137 ] || { echo "the stopped sweep exited $status, expected 137 (SIGKILL)"; tail -20 "$work/killed.log"; exit 1; }
flock "$work/killed/.lock" true  # the killed sweep's runs got SIGTERM: wait until they have checkpointed
stopped=$( (grep -l "interrupted (SIGTERM)" -r "$work/killed/runs" --include=train.log || true) | wc -l)
measured=$(find "$work/killed/runs" -name geometry.json | wc -l)
echo "stopped sweep: $(grep -c '^\[' "$work/killed.log" || true) units finished, $measured measured; runs stopped by SIGTERM: $stopped"
[ "$stopped" -ge 3 ] || { echo "expected every started run to stop after its 8th step"; exit 1; }
[ "$measured" -le 1 ] || { echo "the sweep was not killed at its 2nd measurement"; exit 1; }

# The rerun waits for the killed sweep's runs (they checkpoint and exit), then completes the sweep.
sweep "$work/killed" >"$work/rerun.log" 2>&1 || { echo "rerun failed:"; tail -20 "$work/rerun.log"; exit 1; }
resumed=$( (grep -l "resumed from" -r "$work/killed/runs" --include=train.log || true) | wc -l)
echo "the rerun finished $(grep -c '^\[' "$work/rerun.log" || true) units; runs resumed from a checkpoint: $resumed"
[ "$resumed" -ge "$stopped" ] || { echo "an interrupted run was not resumed from its checkpoint"; exit 1; }

status=0
diff "$work/full/selection.json" "$work/killed/selection.json" || { echo "selections differ"; status=1; }
# Timing columns (seconds, ms per step) differ between any two runs; everything else must not.
untimed() { awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) keep[i] = ($i !~ /seconds|ms_per_step/) }
                     { line = ""; for (i = 1; i <= NF; i++) if (keep[i]) line = line $i ","; print line }' "$1"; }
# Paths, times and the graph cache's byte count (allocator detail) aside.
unplaced() { grep -Ev 'seconds|"started"|"checkpoint"|"dir"|"bytes"' "$1"; }
runs=0
while IFS= read -r csv; do
  dir=${csv%/metrics.csv}
  other=$work/killed/${dir#"$work"/full/}
  runs=$((runs + 1))
  [ -f "$other/metrics.csv" ] || { echo "missing after the rerun: $other"; status=1; continue; }
  diff <(untimed "$csv") <(untimed "$other/metrics.csv") >/dev/null || { echo "metrics differ: ${dir#"$work"/full/}"; status=1; }
  if [ -f "$dir/geometry.json" ]; then
    diff <(unplaced "$dir/geometry.json") <(unplaced "$other/geometry.json") >/dev/null ||
      { echo "flatness differs: ${dir#"$work"/full/}"; status=1; }
  fi
done < <(find "$work/full/runs" -name metrics.csv | sort)
[ "$runs" -ge 5 ] || { echo "only $runs runs compared"; status=1; }
[ "$status" = 0 ] && echo "stopped and rerun sweep equals the uninterrupted one ($runs runs compared)"
exit "$status"
