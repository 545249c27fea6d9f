# flatmin report: lr1e-3: Hessian trace per method
# Data: lr1e-3-trace.dat. Restyle here, then run `gnuplot lr1e-3-trace.gp` in this folder.
set encoding utf8
sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar
set title 'lr1e-3: Hessian trace per method, mean ± 1 std over seeds'
set ylabel 'Hessian trace'
set xrange [-0.5:11-0.5]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics nomirror rotate by -25
set grid ytics lc rgb '#dddddd'
unset key
set border lc rgb '#555555'
set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'
set output 'lr1e-3-trace.svg'
plot 'lr1e-3-trace.dat' using 1:3:(sd(4)):6:xtic(2) with yerrorbars lc rgb variable lw 2 pt 7 ps 1.5
set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'
set output 'lr1e-3-trace.png'
replot
unset output
