#!/usr/bin/env bash
# flatmin train → flatmin geometry --measures all on a tiny run: every measure runs and lands in the JSON,
# the summary is printed, and the same seeds give the same numbers.
# Usage: cli_end_to_end.sh <flatmin executable> <scratch directory>
set -eu
cli=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "FAIL: $*"; [ -f "$dir/log" ] && cat "$dir/log"; exit 1; }
"$cli" train --per-class 30 --val-size 100 --test-size 300 --epochs 1 --width 16 --out "$dir/run" --progress quiet \
  || fail "train"
args=(geometry --checkpoint "$dir/run" --measures all --examples 200 --batch-size 64 --max-probes 20 --top-k 2
      --lanczos-iterations 20 --density-iterations 10 --hutchpp-hvps 9 --gap-draws 4 --sigmas 0.01,0.02
      --ratio-examples 10 --pac-examples 5 --pac-probes 2)
"$cli" "${args[@]}" --out "$dir/a.json" --progress lines > "$dir/log" 2>&1 || fail "geometry"
"$cli" "${args[@]}" --out "$dir/b.json" --progress quiet || fail "geometry (second run)"
for key in gradient trace normalized_trace hutchpp eigenvalues density perturbation_gap approximation_ratio pac_bayes; do
  grep -q "^  \"$key\": {" "$dir/a.json" || fail "no \"$key\" in the JSON"
done
for line in "Hessian trace (Hutchinson)" "top eigenvalues (Lanczos)" "perturbation gap" "PAC-Bayes" "wrote $dir/a.json"; do
  grep -qF "$line" "$dir/log" || fail "no '$line' in the summary"
done
# Identical apart from timings, the start time and the measured heap bytes.
strip() { grep -v -E '"(seconds|build_seconds|started|bytes)":' "$1"; }
diff <(strip "$dir/a.json") <(strip "$dir/b.json") > "$dir/diff" || { cat "$dir/diff"; fail "two runs with the same seeds differ"; }
# Several noise laws: one table each against the same trace; the first law's table is the one-law run's.
gap=(geometry --checkpoint "$dir/run" --measures gap --examples 100 --max-probes 10 --gap-draws 4 --sigmas 0.01,0.02
     --progress quiet)
"$cli" "${gap[@]}" --noise gaussian,laplace --out "$dir/laws.json" || fail "geometry --noise gaussian,laplace"
"$cli" "${gap[@]}" --out "$dir/gaussian.json" || fail "geometry --noise gaussian"
grep -q '"perturbation_gaps": \[' "$dir/laws.json" || fail "no perturbation_gaps"
[ "$(grep -c '"law": "laplace"' "$dir/laws.json")" = 1 ] || fail "no laplace table"
[ "$(grep -c '"law": "gaussian"' "$dir/laws.json")" = 2 ] || fail "the gaussian table is not first"
gaps() { grep -E '^ +"gap": ' "$1" | head -n "$2"; }
diff <(gaps "$dir/laws.json" 2) <(gaps "$dir/gaussian.json" 2) > /dev/null || fail "the gaussian gaps changed with a second law"
[ "$(gaps "$dir/laws.json" 99 | wc -l)" = 6 ] || fail "expected 2 rows in each of 3 tables (perturbation_gap + 2 laws)"
# Both modes: a table per mode, the train one labelled. This MLP has no BatchNorm, so its train-mode loss is the
# eval-mode one: the second mode's own trace and gaps (same seeds) must come out the same.
"$cli" "${gap[@]}" --gap-modes eval,train --out "$dir/modes.json" || fail "geometry --gap-modes eval,train"
[ "$(grep -c '"law": "gaussian (train mode)"' "$dir/modes.json")" = 1 ] || fail "no train-mode table"
diff <(gaps "$dir/modes.json" 99 | sed -n '3,4p') <(gaps "$dir/modes.json" 99 | sed -n '5,6p') > /dev/null ||
  fail "train mode differs from eval mode on a network without BatchNorm"
tables_trace() { grep -E '^      "trace": ' "$dir/modes.json" | sed -n "$1p"; }  # the perturbation_gaps tables' traces
[ -n "$(tables_trace 2)" ] && [ "$(tables_trace 1)" = "$(tables_trace 2)" ] || fail "the train-mode trace differs from the eval-mode one on a network without BatchNorm"
echo "ok"
