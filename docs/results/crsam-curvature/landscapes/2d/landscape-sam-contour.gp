# flatmin report: sam: loss contours
# Data: landscape-sam-contour.dat. Restyle here, then run `gnuplot landscape-sam-contour.gp` in this folder.
set encoding utf8
sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar
set title 'sam: loss contours'
set xlabel 'α (filter-normalised direction 1)'
set ylabel 'β (filter-normalised direction 2)'
set size ratio -1
set view map
set contour base
set cntrparam levels discrete 0.1,0.2,0.5,1,2,5,10,20,50,100,200,500,1000
unset surface
set key outside right
set border lc rgb '#555555'
set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'
set output 'landscape-sam-contour.svg'
splot 'landscape-sam-contour.dat' using 1:2:3 with lines lw 1.5 title ''
set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'
set output 'landscape-sam-contour.png'
replot
unset output
