# flatmin report: fm5-50: Hessian trace paired against sgd
# Data: fm5-50-paired-trace.dat. Restyle here, then run `gnuplot fm5-50-paired-trace.gp` in this folder.
set encoding utf8
sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar
set title 'fm5-50: Hessian trace paired against sgd, mean ± 1 standard error over seeds'
set ylabel 'Hessian trace − sgd'
set xrange [-0.5:9-0.5]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics nomirror rotate by -25
set grid ytics lc rgb '#dddddd'
set xzeroaxis lt 1 lc rgb '#333333'
unset key
set border lc rgb '#555555'
set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'
set output 'fm5-50-paired-trace.svg'
plot 'fm5-50-paired-trace.dat' using 1:3:(sd(4)):8:xtic(2) with yerrorbars lc rgb variable lw 2 pt 7 ps 1.5
set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'
set output 'fm5-50-paired-trace.png'
replot
unset output
