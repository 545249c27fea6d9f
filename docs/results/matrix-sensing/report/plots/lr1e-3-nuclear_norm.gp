# flatmin report: lr1e-3: nuclear_norm per epoch
# Data: lr1e-3-nuclear_norm.dat. Restyle here, then run `gnuplot lr1e-3-nuclear_norm.gp` in this folder.
set encoding utf8
sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar
set title 'lr1e-3: nuclear_norm per epoch, mean ± 1 std over seeds'
set xlabel 'epoch'
set ylabel 'nuclear_norm'
set grid xtics ytics lc rgb '#dddddd'
set key below horizontal
set style fill transparent solid 0.18 noborder
set border lc rgb '#555555'
set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'
set output 'lr1e-3-nuclear_norm.svg'
plot 'lr1e-3-nuclear_norm.dat' index 0 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#1f77b4' notitle, \
     '' index 0 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#1f77b4' title 'gd', \
     '' index 1 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#ff7f0e' notitle, \
     '' index 1 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#ff7f0e' title 'wp-gd (sigma=0.004)', \
     '' index 2 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#2ca02c' notitle, \
     '' index 2 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#2ca02c' title 'wp-gd (sigma=0.016)', \
     '' index 3 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#d62728' notitle, \
     '' index 3 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#d62728' title 'wp-gd (sigma=0.04)', \
     '' index 4 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#9467bd' notitle, \
     '' index 4 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#9467bd' title 'wp-gd (sigma=0.08)', \
     '' index 5 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#8c564b' notitle, \
     '' index 5 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#8c564b' title 'wp-gd (sigma=0.125)', \
     '' index 6 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#e377c2' notitle, \
     '' index 6 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#e377c2' title 'nso (sigma=0.004)', \
     '' index 7 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#7f7f7f' notitle, \
     '' index 7 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#7f7f7f' title 'nso (sigma=0.016)', \
     '' index 8 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#bcbd22' notitle, \
     '' index 8 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#bcbd22' title 'nso (sigma=0.04)', \
     '' index 9 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#17becf' notitle, \
     '' index 9 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#17becf' title 'nso (sigma=0.08)', \
     '' index 10 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#1f77b4' notitle, \
     '' index 10 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#1f77b4' title 'nso (sigma=0.125)'
set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'
set output 'lr1e-3-nuclear_norm.png'
replot
unset output
