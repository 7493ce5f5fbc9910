# gnuplot script written by report; rerun with: gnuplot results/protocol_split/plots/plots.gp
set terminal pngcairo size 900,600 font ',11'
set encoding utf8
set termoption noenhanced

set output 'results/protocol_split/plots/anpyc-sign-1_accuracy_matrix.png'
set title 'anpyc-sign-1: accuracy (%) on task i after training task j (mean of 2 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/anpyc-sign-1_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/anpyc-sign-1_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/anpyc-sign-1_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/anpyc_accuracy_matrix.png'
set title 'anpyc: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/anpyc_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/anpyc_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/anpyc_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/anpyc-noprune_accuracy_matrix.png'
set title 'anpyc-noprune: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/anpyc-noprune_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/anpyc-noprune_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/anpyc-noprune_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/anpyc-recovered_accuracy_matrix.png'
set title 'anpyc-recovered: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/anpyc-recovered_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/anpyc-recovered_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/anpyc-recovered_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/anpyc-retrain1_accuracy_matrix.png'
set title 'anpyc-retrain1: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/anpyc-retrain1_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/anpyc-retrain1_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/anpyc-retrain1_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/clnp_accuracy_matrix.png'
set title 'clnp: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/clnp_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/clnp_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/clnp_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/ewc_accuracy_matrix.png'
set title 'ewc: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/ewc_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/ewc_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/ewc_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/finetune_accuracy_matrix.png'
set title 'finetune: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/finetune_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/finetune_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/finetune_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/hat_accuracy_matrix.png'
set title 'hat: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/hat_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/hat_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/hat_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/lwf_accuracy_matrix.png'
set title 'lwf: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/lwf_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/lwf_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/lwf_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/mas_accuracy_matrix.png'
set title 'mas: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/mas_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/mas_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/mas_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/sgd_accuracy_matrix.png'
set title 'sgd: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/sgd_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/sgd_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/sgd_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/sgdf_accuracy_matrix.png'
set title 'sgdf: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/sgdf_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/sgdf_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/sgdf_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/si_accuracy_matrix.png'
set title 'si: accuracy (%) on task i after training task j (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel 'after training task (j)'
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [4.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
plot 'results/protocol_split/plots/data/si_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/si_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/si_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/joint_accuracy_matrix.png'
set title 'joint: accuracy (%) on task i after training all tasks (mean of 3 run(s))'
unset key
set xlabel 'task evaluated (i)'
set ylabel ''
set cbrange [0:100]
set cblabel 'accuracy (%)'
set palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')
set xrange [-0.5:4.5]
set yrange [0.5:-0.5]
set xtics ('1' 0, '2' 1, '3' 2, '4' 3, '5' 4)
set ytics ('all' 0)
plot 'results/protocol_split/plots/data/joint_matrix.dat' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, 'results/protocol_split/plots/data/joint_matrix.dat' matrix using 1:2:($3 >= 60 ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', 'results/protocol_split/plots/data/joint_matrix.dat' matrix using 1:2:($3 >= 60 ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'
unset xrange
unset yrange
set xtics auto
set ytics auto

set output 'results/protocol_split/plots/acc_after_each_task.png'
set title 'ACC over the tasks trained so far (%), after each task'
set key outside right
set xlabel 'after training task'
set ylabel 'ACC over the tasks trained so far (%)'
set grid
set xtics 1
unset cbrange
plot 'results/protocol_split/plots/data/anpyc-sign-1_curves.dat' using 1:2 with linespoints lw 2 title 'anpyc-sign-1', 'results/protocol_split/plots/data/anpyc_curves.dat' using 1:2 with linespoints lw 2 title 'anpyc', 'results/protocol_split/plots/data/anpyc-noprune_curves.dat' using 1:2 with linespoints lw 2 title 'anpyc-noprune', 'results/protocol_split/plots/data/anpyc-recovered_curves.dat' using 1:2 with linespoints lw 2 title 'anpyc-recovered', 'results/protocol_split/plots/data/anpyc-retrain1_curves.dat' using 1:2 with linespoints lw 2 title 'anpyc-retrain1', 'results/protocol_split/plots/data/clnp_curves.dat' using 1:2 with linespoints lw 2 title 'clnp', 'results/protocol_split/plots/data/ewc_curves.dat' using 1:2 with linespoints lw 2 title 'ewc', 'results/protocol_split/plots/data/finetune_curves.dat' using 1:2 with linespoints lw 2 title 'finetune', 'results/protocol_split/plots/data/hat_curves.dat' using 1:2 with linespoints lw 2 title 'hat', 'results/protocol_split/plots/data/lwf_curves.dat' using 1:2 with linespoints lw 2 title 'lwf', 'results/protocol_split/plots/data/mas_curves.dat' using 1:2 with linespoints lw 2 title 'mas', 'results/protocol_split/plots/data/sgd_curves.dat' using 1:2 with linespoints lw 2 title 'sgd', 'results/protocol_split/plots/data/sgdf_curves.dat' using 1:2 with linespoints lw 2 title 'sgdf', 'results/protocol_split/plots/data/si_curves.dat' using 1:2 with linespoints lw 2 title 'si'
unset grid

set output 'results/protocol_split/plots/bwt_after_each_task.png'
set title 'BWT so far (%), after each task'
set key outside right
set xlabel 'after training task'
set ylabel 'BWT so far (%)'
set grid
set xtics 1
unset cbrange
plot 'results/protocol_split/plots/data/anpyc-sign-1_curves.dat' using 1:3 with linespoints lw 2 title 'anpyc-sign-1', 'results/protocol_split/plots/data/anpyc_curves.dat' using 1:3 with linespoints lw 2 title 'anpyc', 'results/protocol_split/plots/data/anpyc-noprune_curves.dat' using 1:3 with linespoints lw 2 title 'anpyc-noprune', 'results/protocol_split/plots/data/anpyc-recovered_curves.dat' using 1:3 with linespoints lw 2 title 'anpyc-recovered', 'results/protocol_split/plots/data/anpyc-retrain1_curves.dat' using 1:3 with linespoints lw 2 title 'anpyc-retrain1', 'results/protocol_split/plots/data/clnp_curves.dat' using 1:3 with linespoints lw 2 title 'clnp', 'results/protocol_split/plots/data/ewc_curves.dat' using 1:3 with linespoints lw 2 title 'ewc', 'results/protocol_split/plots/data/finetune_curves.dat' using 1:3 with linespoints lw 2 title 'finetune', 'results/protocol_split/plots/data/hat_curves.dat' using 1:3 with linespoints lw 2 title 'hat', 'results/protocol_split/plots/data/lwf_curves.dat' using 1:3 with linespoints lw 2 title 'lwf', 'results/protocol_split/plots/data/mas_curves.dat' using 1:3 with linespoints lw 2 title 'mas', 'results/protocol_split/plots/data/sgd_curves.dat' using 1:3 with linespoints lw 2 title 'sgd', 'results/protocol_split/plots/data/sgdf_curves.dat' using 1:3 with linespoints lw 2 title 'sgdf', 'results/protocol_split/plots/data/si_curves.dat' using 1:3 with linespoints lw 2 title 'si'
unset grid

set output 'results/protocol_split/plots/importance_distribution.png'
set title 'Importance of the shared weights after the last task (newest checkpoint of each run)'
set key inside top left
set xlabel 'log10(importance)'
set ylabel "weights per 0.1 decade (% of each method's values)"
set grid
set xtics auto
set xrange [-14:1]
set yrange [0:*]
plot 'results/protocol_split/plots/data/anpyc-sign-1_importance.dat' using 1:2 with steps lw 2 title 'anpyc-sign-1 (8.8% exactly 0, 0.1% below 1e-14)', 'results/protocol_split/plots/data/anpyc-recovered_importance.dat' using 1:2 with steps lw 2 title 'anpyc-recovered (42.3% exactly 0, 0.4% below 1e-14)', 'results/protocol_split/plots/data/anpyc-retrain1_importance.dat' using 1:2 with steps lw 2 title 'anpyc-retrain1 (60.3% exactly 0, 0.3% below 1e-14)'
unset grid
unset xrange
unset yrange
