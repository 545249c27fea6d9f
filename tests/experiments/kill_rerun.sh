#!/usr/bin/env bash
# A sweep SIGKILLed at a random moment and run again ends with the same results as an uninterrupted one:
# the same selection, and every run's metrics (timings aside) and flatness measurements equal.
#   kill_rerun.sh FLATMIN WORKDIR EXPERIMENT
set -euo pipefail
cli=$1 work=$2 experiment=$3
rm -rf "$work"
mkdir -p "$work"
sweep() { "$cli" sweep "$experiment" --jobs 2 --progress lines --out "$@"; }

sweep "$work/full" >"$work/full.log" 2>&1 || { echo "uninterrupted sweep failed:"; tail -20 "$work/full.log"; exit 1; }

# Kill once a fine-tuning run has written a step checkpoint (so that something is resumed mid-epoch), after
# a further random delay; retry if the sweep finished first.
killed=0
for try in 1 2 3 4 5; do
  rm -rf "$work/killed"
  sweep "$work/killed" >"$work/killed.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    if find "$work/killed/runs" -path '*/checkpoints/step-*' -not -path '*/pretrain/*' 2>/dev/null | grep -q .; then break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", rand() * 4 }')"
  if kill -9 "$pid" 2>/dev/null; then
    killed=1
    wait "$pid" 2>/dev/null || true
    break
  fi
  wait "$pid" 2>/dev/null || true
done
[ "$killed" = 1 ] || { echo "the sweep always finished before it could be killed"; exit 1; }
echo "killed the sweep after: $(grep -c '^\[' "$work/killed.log" || true) finished units"

# The rerun waits for the killed sweep's runs (they checkpoint and exit), then completes the sweep.
sweep "$work/killed" >"$work/rerun.log" 2>&1 || { echo "rerun failed:"; tail -20 "$work/rerun.log"; exit 1; }
resumed=$(grep -l "resumed from" -r "$work/killed/runs" --include=train.log | wc -l)
echo "runs resumed from a checkpoint: $resumed"

status=0
diff "$work/full/selection.json" "$work/killed/selection.json" || { echo "selections differ"; status=1; }
# Timing columns (seconds, ms per step) differ between any two runs; everything else must not.
untimed() { awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) keep[i] = ($i !~ /seconds|ms_per_step/) }
                     { line = ""; for (i = 1; i <= NF; i++) if (keep[i]) line = line $i ","; print line }' "$1"; }
unplaced() { grep -Ev 'seconds|"started"|"checkpoint"|"dir"' "$1"; }
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
[ "$status" = 0 ] && echo "killed and rerun sweep equals the uninterrupted one ($runs runs compared)"
exit "$status"
