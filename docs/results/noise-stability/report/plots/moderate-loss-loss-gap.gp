# flatmin report: moderate-loss: generalisation gap (test − train loss) per epoch
# Data: moderate-loss-loss-gap.dat. Restyle here, then run `gnuplot moderate-loss-loss-gap.gp` in this folder.
set encoding utf8
sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar
set title 'moderate-loss: generalisation gap (test − train loss) per epoch, mean ± 1 std over seeds'
set xlabel 'epoch'
set ylabel 'generalisation gap (test − train loss)'
set xtics 1
set grid xtics ytics lc rgb '#dddddd'
set key below horizontal
set style fill transparent solid 0.18 noborder
set border lc rgb '#555555'
set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'
set output 'moderate-loss-loss-gap.svg'
plot 'moderate-loss-loss-gap.dat' index 0 using 1:($2-sd(3)):($2+sd(3)) with filledcurves lc rgb '#1f77b4' notitle, \
     '' index 0 using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#1f77b4' title 'sgd'
set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'
set output 'moderate-loss-loss-gap.png'
replot
unset output
