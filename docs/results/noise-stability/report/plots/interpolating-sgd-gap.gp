# flatmin report: interpolating, sgd: noise stability
# Data: interpolating-sgd-gap.dat. Restyle here, then run `gnuplot interpolating-sgd-gap.gp` in this folder.
set encoding utf8
sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar
set title 'interpolating, sgd: noise stability (mean over seeds, ±1 std)'
set xlabel 'σ'
set ylabel 'E[f(W+U)] − f(W)'
set logscale xy
set grid xtics ytics lc rgb '#dddddd'
set key top left
set border lc rgb '#555555'
set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'
set output 'interpolating-sgd-gap.svg'
plot 'interpolating-sgd-gap.dat' index 0 using 1:2:(sd(3)) with yerrorbars lc rgb '#1f77b4' pt 7 ps 0.8 lw 1.5 title 'gaussian gap', \
     '' index 0 using 1:2 with lines lc rgb '#1f77b4' lw 1.5 notitle, \
     '' index 1 using 1:2:(sd(3)) with yerrorbars lc rgb '#d62728' pt 7 ps 0.8 lw 1.5 title 'laplace gap', \
     '' index 1 using 1:2 with lines lc rgb '#d62728' lw 1.5 notitle, \
     '' index 2 using 1:2:(sd(3)) with yerrorbars lc rgb '#2ca02c' pt 7 ps 0.8 lw 1.5 title 'uniform gap', \
     '' index 2 using 1:2 with lines lc rgb '#2ca02c' lw 1.5 notitle, \
     '' index 0 using 1:4 with lines lc rgb '#333333' lw 2 dt 2 title 'σ²/2·Tr'
set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'
set output 'interpolating-sgd-gap.png'
replot
unset output
