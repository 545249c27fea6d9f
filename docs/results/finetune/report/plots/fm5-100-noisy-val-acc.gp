# flatmin report: fm5-100-noisy: validation accuracy per epoch
# Data: fm5-100-noisy-val-acc.dat. Restyle here, then run `gnuplot fm5-100-noisy-val-acc.gp` in this folder.
set encoding utf8
sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar
set title 'fm5-100-noisy: validation accuracy per epoch, mean ± 1 std over seeds'
set xlabel 'epoch'
set ylabel 'validation accuracy (%)'
set xtics 1
set grid xtics ytics lc rgb '#dddddd'
set key below horizontal
set style fill transparent solid 0.18 noborder
set border lc rgb '#555555'
set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'
set output 'fm5-100-noisy-val-acc.svg'
plot 'fm5-100-noisy-val-acc.dat' index 0 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#1f77b4' notitle, \
     '' index 0 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#1f77b4' title 'sgd', \
     '' index 1 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#ff7f0e' notitle, \
     '' index 1 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#ff7f0e' title 'label-smoothing', \
     '' index 2 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#2ca02c' notitle, \
     '' index 2 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#2ca02c' title 'wp-sgd', \
     '' index 3 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#d62728' notitle, \
     '' index 3 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#d62728' title 'sam', \
     '' index 4 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#9467bd' notitle, \
     '' index 4 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#9467bd' title 'usam', \
     '' index 5 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#8c564b' notitle, \
     '' index 5 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#8c564b' title 'asam', \
     '' index 6 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#e377c2' notitle, \
     '' index 6 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#e377c2' title 'rsam', \
     '' index 7 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#7f7f7f' notitle, \
     '' index 7 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#7f7f7f' title 'bsam', \
     '' index 8 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#bcbd22' notitle, \
     '' index 8 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#bcbd22' title 'crsam', \
     '' index 9 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#17becf' notitle, \
     '' index 9 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#17becf' title 'nso'
set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'
set output 'fm5-100-noisy-val-acc.png'
replot
unset output
