#!/usr/bin/env bash
# A sweep SIGKILLed at a random moment and run again ends with the same results as an uninterrupted one:
# the same selection, and every run's metrics (timings aside) and flatness measurements equal.
#   kill_rerun.sh FLATMIN WORKDIR EXPERIMENT
set -euo pipefail
cli=$1 work=$2 experiment=$3
rm -rf "$work"
mkdir -p "$work"
# exec: in the background, $! is then flatmin's own pid (not a subshell's), so kill -9 reaches the sweep.
sweep() { exec "$cli" sweep "$experiment" --jobs 2 --progress lines --out "$@"; }

(sweep "$work/full") >"$work/full.log" 2>&1 || { echo "uninterrupted sweep failed:"; tail -20 "$work/full.log"; exit 1; }

# Kill while a fine-tuning run is between two of its checkpoints (so that the rerun resumes it mid-run),
# after a further random delay; retry when that moment was missed.
interrupted_runs() {  # runs with a step checkpoint and no summary: what a rerun resumes
  find "$work/killed/runs" -type d -name checkpoints -not -path '*/pretrain/*' 2>/dev/null |
    while IFS= read -r d; do [ -f "${d%/checkpoints}/summary.json" ] || echo "${d%/checkpoints}"; done
}
killed=0
for try in 1 2 3 4 5; do
  rm -rf "$work/killed"
  (sweep "$work/killed") >"$work/killed.log" 2>&1 &
  pid=$!
  for _ in $(seq 1200); do
    [ -n "$(interrupted_runs)" ] && break
    # Never wait for the end: after 1 + try finished units, kill anyway.
    [ "$(grep -c '^\[' "$work/killed.log" 2>/dev/null || true)" -ge $((1 + try)) ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", rand() * 0.5 }')"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  flock "$work/killed/.lock" true  # the killed sweep's runs got SIGTERM: wait until they have checkpointed
  if [ -n "$(interrupted_runs)" ]; then
    killed=1
    break
  fi
done
if [ "$killed" = 0 ]; then
  # On a fast machine a tiny run trains for a fraction of a second: the kill may keep landing in start-up.
  # The sweep was still killed before it finished (its runs started afresh on the rerun): compare that.
  echo "note: 5 tries never caught a run between two checkpoints; comparing the last killed sweep"
fi
echo "killed the sweep after $(grep -c '^\[' "$work/killed.log" || true) finished units; interrupted: $(interrupted_runs | tr '\n' ' ')"

# The rerun waits for the killed sweep's runs (they checkpoint and exit), then completes the sweep.
(sweep "$work/killed") >"$work/rerun.log" 2>&1 || { echo "rerun failed:"; tail -20 "$work/rerun.log"; exit 1; }
resumed=$( (grep -l "resumed from" -r "$work/killed/runs" --include=train.log || true) | wc -l)
rerun_units=$(grep -c '^\[' "$work/rerun.log" || true)
echo "the rerun finished $rerun_units units; runs resumed from a checkpoint: $resumed"
[ "$rerun_units" -ge 1 ] || { echo "the rerun had nothing left to do: the sweep was not killed"; exit 1; }
[ "$killed" = 0 ] || [ "$resumed" -ge 1 ] || { echo "an interrupted run was not resumed from its checkpoint"; exit 1; }

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
[ "$status" = 0 ] && echo "killed and rerun sweep equals the uninterrupted one ($runs runs compared)"
exit "$status"
