#!/bin/sh
# The matrix sensing learning curves beside the NSO paper's Figure 6: training loss (a), test loss (b) and
# recovery error ‖UUᵀ − X*‖_F/‖X*‖_F (c) against the step, for GD, WP-GD and NSO at one σ, each the mean over
# the seeds of a `flatmin sweep experiments/matrix-sensing.toml` root (thin lines: each seed).
#
#   scripts/sensing-curves.sh ROOT OUT [SIGMA [TASK]]
#   scripts/sensing-curves.sh runs/matrix-sensing docs/results/matrix-sensing 0.08
#
# Writes OUT/learning-curves.{dat,gp,svg,png} (gnuplot; rerun `gnuplot learning-curves.gp` in OUT to restyle).
set -eu
root=${1:?usage: sensing-curves.sh ROOT OUT [SIGMA [TASK]]}
out=${2:?usage: sensing-curves.sh ROOT OUT [SIGMA [TASK]]}
sigma=${3:-0.08}
task=${4:-lr1e-3}
mkdir -p "$out"
dat="$out/learning-curves.dat"
: > "$dat"
block=0
for method in gd wp-gd nso; do
  case $method in gd) dir="$root/runs/$task/gd/default" ;; *) dir="$root/runs/$task/$method/sigma=$sigma" ;; esac
  ls "$dir"/seed*/metrics.csv > /dev/null 2>&1 || { echo "error: no runs in $dir" >&2; exit 1; }
  # The mean over seeds per step, columns by name: step, train loss, test loss, recovery error.
  awk -F, -v method="$method" '
    FNR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { s = $col["epoch"]; n[s]++; tr[s] += $col["train_loss"]; te[s] += $col["test_loss"]; re[s] += $col["recovery_error"]
      if (!(s in seen)) { seen[s] = 1; order[++count] = s } }
    END { print "# " method ": step, mean train loss, mean test loss, mean recovery error, seeds"
          for (k = 1; k <= count; k++) { s = order[k]; printf "%s %.10g %.10g %.10g %d\n", s, tr[s] / n[s], te[s] / n[s], re[s] / n[s], n[s] } }
  ' "$dir"/seed*/metrics.csv >> "$dat"
  printf '\n\n' >> "$dat"
  block=$((block + 1))
done
cat > "$out/learning-curves.gp" <<GP
# Matrix sensing, $task, sigma = $sigma: mean over seeds (scripts/sensing-curves.sh).
set datafile commentschars "#"
set key top right
set grid
set xlabel "step"
set style line 1 lc rgb "#333333" lw 2
set style line 2 lc rgb "#1f77b4" lw 2
set style line 3 lc rgb "#d62728" lw 2
do for [fmt in "svg png"] {
  if (fmt eq "svg") { set terminal svg size 1200,380 dynamic font "sans,11" } else { set terminal pngcairo size 1200,380 font "sans,10" }
  set output "learning-curves.".fmt
  set multiplot layout 1,3 title "Matrix sensing (d = 100, r = 5, n = 2,500, lr 1e-3), sigma = $sigma: mean of the seeds"
  set logscale y
  set format y "10^{%L}"
  set title "(a) training loss (1/(2n) sum of squared errors)"
  plot "learning-curves.dat" index 0 using 1:2 with lines ls 1 title "GD", "" index 1 using 1:2 with lines ls 2 title "WP-GD", "" index 2 using 1:2 with lines ls 3 title "NSO"
  set title "(b) test loss (1,000 fresh measurements)"
  plot "learning-curves.dat" index 0 using 1:3 with lines ls 1 title "GD", "" index 1 using 1:3 with lines ls 2 title "WP-GD", "" index 2 using 1:3 with lines ls 3 title "NSO"
  set format y "%g"
  set title "(c) recovery error ||UU^T - X*||_F / ||X*||_F"
  plot "learning-curves.dat" index 0 using 1:4 with lines ls 1 title "GD", "" index 1 using 1:4 with lines ls 2 title "WP-GD", "" index 2 using 1:4 with lines ls 3 title "NSO"
  unset multiplot
  unset output
}
GP
(cd "$out" && gnuplot learning-curves.gp)
echo "wrote $out/learning-curves.{dat,gp,svg,png}"
