# flatmin report: default: final test accuracy per method
# Data: default-final-acc.dat. Restyle here, then run `gnuplot default-final-acc.gp` in this folder.
set encoding utf8
sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar
set title 'default: final test accuracy per method, mean ± 1 std over seeds'
set ylabel 'final test accuracy (%)'
set xrange [-0.5:4-0.5]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics nomirror
set grid ytics lc rgb '#dddddd'
unset key
set border lc rgb '#555555'
set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'
set output 'default-final-acc.svg'
plot 'default-final-acc.dat' using 1:3:(sd(4)):6:xtic(2) with yerrorbars lc rgb variable lw 2 pt 7 ps 1.5
set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'
set output 'default-final-acc.png'
replot
unset output
