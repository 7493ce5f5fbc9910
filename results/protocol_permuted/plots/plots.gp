# gnuplot script written by report; rerun with: gnuplot results/protocol_permuted/plots/plots.gp
set terminal pngcairo size 900,600 font ',11'
set encoding utf8
set termoption noenhanced

set output 'results/protocol_permuted/plots/anpyc-sign-1_accuracy_matrix.png'
set title 'anpyc-sign-1: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/anpyc-sign-1_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/anpyc-sign-1_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/anpyc-sign-1_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/anpyc_accuracy_matrix.png'
set title 'anpyc: accuracy (%) on task i after training task j (mean of 1 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/anpyc_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/anpyc_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/anpyc_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/anpyc-noprune_accuracy_matrix.png'
set title 'anpyc-noprune: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/anpyc-noprune_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/anpyc-noprune_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/anpyc-noprune_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/clnp_accuracy_matrix.png'
set title 'clnp: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/clnp_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/clnp_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/clnp_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/ewc_accuracy_matrix.png'
set title 'ewc: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/ewc_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/ewc_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/ewc_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/finetune_accuracy_matrix.png'
set title 'finetune: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/finetune_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/finetune_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/finetune_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/hat_accuracy_matrix.png'
set title 'hat: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/hat_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/hat_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/hat_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/lwf_accuracy_matrix.png'
set title 'lwf: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/lwf_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/lwf_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/lwf_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/mas_accuracy_matrix.png'
set title 'mas: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/mas_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/mas_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/mas_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/sgd_accuracy_matrix.png'
set title 'sgd: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/sgd_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/sgd_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/sgd_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/sgdf_accuracy_matrix.png'
set title 'sgdf: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/sgdf_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/sgdf_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/sgdf_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/si_accuracy_matrix.png'
set title 'si: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [9.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
plot 'results/protocol_permuted/plots/data/si_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/si_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/si_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/joint_accuracy_matrix.png'
set title 'joint: accuracy (%) on task i after training all tasks (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel ''
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:9.5]
set yrange [0.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4, '6' 5, '7' 6, '8' 7, '9' 8, '10' 9)
set ytics ('all' 0)
plot 'results/protocol_permuted/plots/data/joint_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_permuted/plots/data/joint_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_permuted/plots/data/joint_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_permuted/plots/acc_after_each_task.png'
set title 'ACC over the tasks trained so far (%), after each task'
set key outside right
set xlabel 'after training task'
set ylabel 'ACC over the tasks trained so far (%)'
set grid
set xtics 1
unset cbrange
plot 'results/protocol_permuted/plots/data/anpyc-sign-1_curves.dat' using 1:2 with linespoints lw 2 title 'anpyc-sign-1', 'results/protocol_permuted/plots/data/anpyc_curves.dat' using 1:2 with linespoints lw 2 title 'anpyc', 'results/protocol_permuted/plots/data/anpyc-noprune_curves.dat' using 1:2 with linespoints lw 2 title 'anpyc-noprune', 'results/protocol_permuted/plots/data/clnp_curves.dat' using 1:2 with linespoints lw 2 title 'clnp', 'results/protocol_permuted/plots/data/ewc_curves.dat' using 1:2 with linespoints lw 2 title 'ewc', 'results/protocol_permuted/plots/data/finetune_curves.dat' using 1:2 with linespoints lw 2 title 'finetune', 'results/protocol_permuted/plots/data/hat_curves.dat' using 1:2 with linespoints lw 2 title 'hat', 'results/protocol_permuted/plots/data/lwf_curves.dat' using 1:2 with linespoints lw 2 title 'lwf', 'results/protocol_permuted/plots/data/mas_curves.dat' using 1:2 with linespoints lw 2 title 'mas', 'results/protocol_permuted/plots/data/sgd_curves.dat' using 1:2 with linespoints lw 2 title 'sgd', 'results/protocol_permuted/plots/data/sgdf_curves.dat' using 1:2 with linespoints lw 2 title 'sgdf', 'results/protocol_permuted/plots/data/si_curves.dat' using 1:2 with linespoints lw 2 title 'si'
unset grid

set output 'results/protocol_permuted/plots/bwt_after_each_task.png'
set title 'BWT so far (%), after each task'
set key outside right
set xlabel 'after training task'
set ylabel 'BWT so far (%)'
set grid
set xtics 1
unset cbrange
plot 'results/protocol_permuted/plots/data/anpyc-sign-1_curves.dat' using 1:3 with linespoints lw 2 title 'anpyc-sign-1', 'results/protocol_permuted/plots/data/anpyc_curves.dat' using 1:3 with linespoints lw 2 title 'anpyc', 'results/protocol_permuted/plots/data/anpyc-noprune_curves.dat' using 1:3 with linespoints lw 2 title 'anpyc-noprune', 'results/protocol_permuted/plots/data/clnp_curves.dat' using 1:3 with linespoints lw 2 title 'clnp', 'results/protocol_permuted/plots/data/ewc_curves.dat' using 1:3 with linespoints lw 2 title 'ewc', 'results/protocol_permuted/plots/data/finetune_curves.dat' using 1:3 with linespoints lw 2 title 'finetune', 'results/protocol_permuted/plots/data/hat_curves.dat' using 1:3 with linespoints lw 2 title 'hat', 'results/protocol_permuted/plots/data/lwf_curves.dat' using 1:3 with linespoints lw 2 title 'lwf', 'results/protocol_permuted/plots/data/mas_curves.dat' using 1:3 with linespoints lw 2 title 'mas', 'results/protocol_permuted/plots/data/sgd_curves.dat' using 1:3 with linespoints lw 2 title 'sgd', 'results/protocol_permuted/plots/data/sgdf_curves.dat' using 1:3 with linespoints lw 2 title 'sgdf', 'results/protocol_permuted/plots/data/si_curves.dat' using 1:3 with linespoints lw 2 title 'si'
unset grid

set output 'results/protocol_permuted/plots/importance_distribution.png'
set title 'Importance of the shared weights after the last task (newest checkpoint of each run)'
set key inside top left
set xlabel 'log10(importance)'
set ylabel "weights per 0.1 decade (% of each method's values)"
set grid
set xtics auto
set xrange [-6:2]
set yrange [0:*]
plot 'results/protocol_permuted/plots/data/anpyc-sign-1_importance.dat' using 1:2 with steps lw 2 title 'anpyc-sign-1 (4.1% exactly 0, 0.7% below 1e-6)', 'results/protocol_permuted/plots/data/anpyc-noprune_importance.dat' using 1:2 with steps lw 2 title 'anpyc-noprune (0.0% exactly 0, <0.1% below 1e-6)', 'results/protocol_permuted/plots/data/mas_importance.dat' using 1:2 with steps lw 2 title 'mas (0.0% exactly 0)', 'results/protocol_permuted/plots/data/si_importance.dat' using 1:2 with steps lw 2 title 'si (0.0% exactly 0)'
unset grid
unset xrange
unset yrange
