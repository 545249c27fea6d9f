#!/usr/bin/env bash
# flatmin report on a hand-built sweep root (report_test_tool write-sweep; see fake_sweep.h): every table, each
# figure's .dat/.gp/.svg/.png, and an index.html that headless Chromium renders — a screenshot that is not blank
# and shows the figures' colours, a DOM with every figure, caption and table. Then the page without gnuplot
# (the scripts stay, one warning), and with PNG figures only (embedded as data URIs).
# Usage: cli_end_to_end.sh <flatmin executable> <report_test_tool> <scratch directory>
# Exit 77 (skipped) when gnuplot or chromium is not installed.
set -u
cli=$1
tool=$2
dir=$3
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "FAIL: $*"; exit 1; }
command -v gnuplot > /dev/null || { echo "SKIP: gnuplot not found (Debian: gnuplot-nox)"; exit 77; }
command -v chromium > /dev/null || { echo "SKIP: chromium not found"; exit 77; }

"$tool" write-sweep "$dir/sweep" || fail "writing the fake sweep"
"$cli" report "$dir/sweep" > "$dir/stdout" 2> "$dir/stderr" || { cat "$dir/stdout" "$dir/stderr"; fail "flatmin report"; }
cat "$dir/stdout"
[ -s "$dir/stderr" ] && { cat "$dir/stderr"; fail "warnings on a complete sweep"; }
out=$dir/sweep/report
for f in results.md results.csv results.json paired.csv index.html; do [ -s "$out/$f" ] || fail "no $out/$f"; done
grep -q "^\* nso" "$dir/stdout" || fail "the summary does not mark the highlighted method"
grep -qF "test accuracy +0.50 points" "$dir/stdout" || fail "the summary lacks the average accuracy change"
[ "$(wc -l < "$out/results.csv")" -eq 7 ] || fail "results.csv: expected a header and 6 groups"
grep -q "^fm5-50,nso,sgd,reference,test_acc,3," "$out/paired.csv" || fail "paired.csv: no nso − sgd accuracy row"
grep -qF "## Paired differences, task fm5-50" "$out/results.md" || fail "results.md: no paired table"

figures=()
for task in fm5-50 c10_5; do
  for kind in val-acc val-loss objective test-acc test-loss train-loss loss-gap final-acc trace lambda1 trace-epochs \
              lambda1-epochs paired-acc paired-trace; do
    figures+=("$task-$kind")
  done
done
for f in "${figures[@]}"; do
  for ext in dat gp svg png; do [ -s "$out/plots/$f.$ext" ] || fail "no $out/plots/$f.$ext"; done
done
# The scripts rerun on their own inside the plots folder.
(cd "$out/plots" && rm fm5-50-test-acc.svg && gnuplot fm5-50-test-acc.gp && [ -s fm5-50-test-acc.svg ]) \
  || fail "rerunning gnuplot fm5-50-test-acc.gp in the plots folder"

# The page in a headless browser. Its own profile directory: no clash with another Chromium.
browser=(chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$dir/chromium-profile")
"${browser[@]}" --window-size=1280,4000 --screenshot="$dir/page.png" "file://$out/index.html" > "$dir/chromium.log" 2>&1
[ -s "$dir/page.png" ] || { cat "$dir/chromium.log"; fail "no screenshot"; }
# Not blank: text, tables and plots; the first and third methods' line colours (the figures drew).
"$tool" check-png "$dir/page.png" 200 0.05 1f77b4 2ca02c || fail "the screenshot of index.html"
"${browser[@]}" --dump-dom "file://$out/index.html" > "$dir/dom.html" 2> "$dir/chromium.log"
count() { grep -o "$1" "$dir/dom.html" | wc -l; }
[ "$(count '<svg')" -eq ${#figures[@]} ] || fail "$(count '<svg') inline SVGs in the DOM, expected ${#figures[@]}"
[ "$(count '<figcaption')" -eq ${#figures[@]} ] || fail "$(count '<figcaption') figure captions, expected ${#figures[@]}"
[ "$(count '<table')" -eq 7 ] || fail "$(count '<table') tables, expected 7 (comparison, 2 tasks and their paired differences, selection, runs not done)"
grep -qF "Fine-tuning on &lt;small&gt; targets" "$dir/dom.html" || fail "the description is not escaped text"
for f in "${figures[@]}"; do grep -qF "id=\"fig-$f\"" "$dir/dom.html" || fail "figure $f not in the DOM"; done

# Without gnuplot: one warning, exit 0, the .dat/.gp files, no images; the page still lists every figure.
env PATH=/nonexistent "$cli" report "$dir/sweep" --out "$dir/no-gnuplot" > /dev/null 2> "$dir/stderr" \
  || fail "flatmin report without gnuplot"
[ "$(grep -c "^warning: gnuplot: not found" "$dir/stderr")" -eq 1 ] || { cat "$dir/stderr"; fail "expected one gnuplot warning"; }
[ -s "$dir/no-gnuplot/plots/fm5-50-trace.gp" ] && [ -s "$dir/no-gnuplot/plots/fm5-50-trace.dat" ] || fail "no .gp/.dat without gnuplot"
[ -e "$dir/no-gnuplot/plots/fm5-50-trace.svg" ] && fail "an image without gnuplot?"
[ "$(grep -o '<figcaption' "$dir/no-gnuplot/index.html" | wc -l)" -eq ${#figures[@]} ] || fail "captions without gnuplot"

# PNG only: embedded in the page as data URIs, no SVG written.
"$cli" report "$dir/sweep" --out "$dir/png" --formats png > /dev/null || fail "flatmin report --formats png"
[ -e "$dir/png/plots/fm5-50-trace.svg" ] && fail "an SVG with --formats png"
[ "$(grep -o 'src="data:image/png;base64,' "$dir/png/index.html" | wc -l)" -eq ${#figures[@]} ] || fail "PNGs not embedded"

# --no-plots: tables only.
"$cli" report "$dir/sweep" --out "$dir/tables" --no-plots > /dev/null || fail "flatmin report --no-plots"
[ -e "$dir/tables/plots" ] && fail "a plots folder with --no-plots"
grep -q "<figure" "$dir/tables/index.html" && fail "figures with --no-plots"
echo "ok"
