# flatmin report: loss landscape: accuracy
# Data: landscape-accuracy.dat. Restyle here, then run `gnuplot landscape-accuracy.gp` in this folder.
set encoding utf8
sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar
set title 'loss landscape: accuracy'
set xlabel 'α (filter-normalised direction 1)'
set ylabel 'accuracy (%)'
set grid xtics ytics lc rgb '#dddddd'
set key below horizontal
set border lc rgb '#555555'
set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'
set output 'landscape-accuracy.svg'
plot 'landscape-accuracy.dat' index 0 using 1:2 with lines lw 2 lc rgb '#1f77b4' title 'sgd', \
     '' index 1 using 1:2 with lines lw 2 lc rgb '#ff7f0e' title 'sam', \
     '' index 2 using 1:2 with lines lw 2 lc rgb '#2ca02c' title 'crsam', \
     '' index 3 using 1:2 with lines lw 2 lc rgb '#d62728' title 'nso'
set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'
set output 'landscape-accuracy.png'
replot
unset output
