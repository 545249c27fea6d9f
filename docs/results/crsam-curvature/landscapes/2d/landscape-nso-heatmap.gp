# flatmin report: nso: log10 loss
# Data: landscape-nso-heatmap.dat. Restyle here, then run `gnuplot landscape-nso-heatmap.gp` in this folder.
set encoding utf8
sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar
set title 'nso: log10 loss'
set xlabel 'α (filter-normalised direction 1)'
set ylabel 'β (filter-normalised direction 2)'
set size ratio -1
set view map
set palette rgbformulae 33,13,10
set border lc rgb '#555555'
set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'
set output 'landscape-nso-heatmap.svg'
splot 'landscape-nso-heatmap.dat' using 1:2:(log10($3)) with pm3d notitle
set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'
set output 'landscape-nso-heatmap.png'
replot
unset output
