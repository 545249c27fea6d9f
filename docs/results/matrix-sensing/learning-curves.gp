# Matrix sensing, lr1e-3, sigma = 0.08: mean over seeds (scripts/sensing-curves.sh).
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
  set multiplot layout 1,3 title "Matrix sensing (d = 100, r = 5, n = 2,500, lr 1e-3), sigma = 0.08: mean of the seeds"
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
