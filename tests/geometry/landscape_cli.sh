#!/usr/bin/env bash
# flatmin landscape end to end: the loss at the model equals flatmin geometry's loss on the same examples; an
# interrupted grid continues to the same numbers; other settings on the same folder are refused; 2-D and
# the line between two models write their grids and figures.
# Usage: landscape_cli.sh <flatmin executable> <scratch directory>
set -eu
cli=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "FAIL: $*"; exit 1; }
# Two ResNets (BatchNorm: the line must carry its running statistics) on the same split (same seed): NSO's and SGD's.
for m in 0:nso 1:sgd; do
  "$cli" train --model resnet18 --width 2 --per-class 20 --val-size 100 --test-size 100 --epochs 1 --method "${m#*:}" --out "$dir/run${m%%:*}" \
    --progress quiet || fail "train $m"
done
ls_args=(landscape --checkpoint "$dir/run0" --points 5 --examples 100 --formats svg --progress quiet)
"$cli" "${ls_args[@]}" --out "$dir/full" || fail "landscape"
[ "$(wc -l < "$dir/full/landscape.csv")" = 6 ] || fail "expected 5 points"
[ -f "$dir/full/landscape-loss.gp" ] && [ -f "$dir/full/landscape-accuracy.dat" ] || fail "no figure files"
# The origin (x = 0, index 2) is the model itself.
"$cli" geometry --checkpoint "$dir/run0" --measures grad --examples 100 --out "$dir/g.json" --progress quiet || fail "geometry"
origin=$(awk -F, '$2 == 2 {print $5}' "$dir/full/landscape.csv")
loss=$(grep -E '^  "loss": [0-9]' "$dir/g.json" | sed 's/.*: //; s/,//')
awk -v a="$origin" -v b="$loss" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * b) }' \
  || fail "loss at the origin $origin, flatmin geometry $loss"
# Killed after two points: the rerun measures the other three, to the same numbers.
mkdir -p "$dir/resumed"
cp "$dir/full/landscape.json" "$dir/resumed/"
head -n 3 "$dir/full/landscape.csv" > "$dir/resumed/landscape.csv"
"$cli" "${ls_args[@]}" --out "$dir/resumed" || fail "landscape (resumed)"
diff <(sort "$dir/full/landscape.csv") <(sort "$dir/resumed/landscape.csv") || fail "the resumed grid differs"
# Other settings on the same folder: one line, non-zero.
if "$cli" "${ls_args[@]}" --out "$dir/full" --seed 5 2> "$dir/err"; then fail "other settings accepted"; fi
grep -q "holds a landscape with other settings" "$dir/err" || fail "message: $(cat "$dir/err")"
# 2-D: 3 × 3 points, contour and heat map; the line from run0 to run1 ends at run1's own loss.
"$cli" landscape --checkpoint "$dir/run0" --dims 2 --points 3 --examples 100 --formats svg --progress quiet --out "$dir/plane" \
  || fail "2-D landscape"
[ "$(wc -l < "$dir/plane/landscape.csv")" = 10 ] || fail "expected 9 points in 2-D"
[ -f "$dir/plane/landscape-run0-contour.gp" ] && [ -f "$dir/plane/landscape-run0-heatmap.gp" ] || fail "no 2-D figures"
"$cli" landscape --checkpoint "$dir/run0" --to "$dir/run1" --range 0,1 --points 2 --examples 100 --formats svg \
  --progress quiet --out "$dir/line" || fail "line landscape"
"$cli" landscape --checkpoint "$dir/run1" --range -1,1 --points 3 --examples 100 --formats svg --progress quiet \
  --out "$dir/run1-alone" || fail "landscape of run1"
end=$(awk -F, '$2 == 1 {print $5}' "$dir/line/landscape.csv")
own=$(awk -F, '$2 == 1 {print $5}' "$dir/run1-alone/landscape.csv")
awk -v a="$end" -v b="$own" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * b) }' \
  || fail "the line ends at loss $end, run1's own loss is $own"
echo "ok"
