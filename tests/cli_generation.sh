# Continual generation as a user runs it (model.arch=vae, docs/generation.md),
# on real Fashion-MNIST: a feature file made by fid-features, a VAE trained on
# two one-class tasks with fine-tuning on 1 and on 2 ranks (the same FID matrix),
# results.json, fid_matrix.csv and the sample grids, EWC, MAS, ANPyC (no pruning) and DGR
# on the generator, and the refusals: a classification-only
# algorithm, a missing feature file, another checksum than the file's.
# Also a tiny generation sweep (SI strength chosen on validation FID) and its report,
# the conditional GAN (model.arch=gan): 1 and 2 ranks agree, ANPyC and DGR on it, and its refusals,
# and the last FID row recomputed by scripts/recompute_fid.py from the images a run saved.
# Needs TRAIN, SWEEP, FID_FEATURES, MPIRUN, SOURCE_DIR.
source "$(dirname "$0")/cli_lib.sh"

timeout 120 "$FID_FEATURES" --epochs 1 --train-samples 600 --test-samples 100 --threads 1 --output "$WORK/fid.h5" \
  > "$WORK/fid.out" 2>&1 && pass "fid-features made a feature file" || { fail "fid-features"; cat "$WORK/fid.out"; }
checksum=$(sed -n 's/^checksum \([0-9a-f]\{16\}\)$/\1/p' "$WORK/fid.out")

VAE=(--data.root "$FMNIST" --data.stream split --data.tasks 2 --data.classes_per_task 1
     --data.train_samples_per_task 300 --data.test_samples_per_task 100 --model.arch vae --model.vae_hidden 64
     --model.vae_latent 8 --train.epochs 2 --train.batch_size 20 --train.optimizer adam --train.lr 0.005
     --generation.fid_samples 100 --run.threads 1)
FEATURES=(--generation.fid_features "$WORK/fid.h5" --generation.fid_checksum "$checksum")

for ranks in 1 2; do
  if timeout 300 "${MPI[@]}" -np $ranks "$TRAIN" "${VAE[@]}" "${FEATURES[@]}" --output "$WORK/vae$ranks" > "$WORK/vae$ranks.out" 2>&1; then
    pass "VAE with fine-tuning on $ranks rank(s)"; else fail "VAE on $ranks rank(s)"; tail -20 "$WORK/vae$ranks.out"; fi
done
grep -q "^\[.*\] after task 1: fid [0-9.]* [0-9.]* | mean over trained [0-9.]*" "$WORK/vae1.out" \
  && grep -q "task 1 epoch 2/2: loss [0-9.]*, kl [0-9.]*" "$WORK/vae1.out" \
  && grep -q "FID features: $WORK/fid.h5, checksum $checksum (fashion-mnist LeNet, test accuracy 0\.[0-9]*); 100 generated images per task" "$WORK/vae1.out" \
  && pass "the log names the feature file and its checksum, shows the epoch's loss and KL and the FID row after each task" \
  || { fail "log lines"; grep -E "after task|epoch 2/2" "$WORK/vae1.out"; }
[ "$(head -c 4 "$WORK/vae2/samples/after_task_1.png" | tail -c 3)" = "PNG" ] && [ -s "$WORK/vae2/samples/after_task_2.png" ] \
  && [ ! -e "$WORK/vae2/samples/after_task_0.png" ] && pass "a PNG sample grid after each task (samples/after_task_<j>.png)" \
  || { fail "sample grids"; ls -l "$WORK/vae2/samples"; }
head -1 "$WORK/vae1/generated_accuracy.csv" | grep -qx "after,task_1,task_2" \
  && [ "$(sed -n 4p "$WORK/vae1/generated_accuracy.csv" | cut -d, -f1)" = "task_2" ] \
  && pass "generated_accuracy.csv: initial and one row per task" || { fail "generated_accuracy.csv"; cat "$WORK/vae1/generated_accuracy.csv"; }
head -1 "$WORK/vae1/fid_matrix.csv" | grep -qx "stage,task_1,task_2" && [ "$(wc -l < "$WORK/vae1/fid_matrix.csv")" -eq 4 ] \
  && pass "fid_matrix.csv: initial and one row per task" || { fail "fid_matrix.csv"; cat "$WORK/vae1/fid_matrix.csv"; }
python3 - "$WORK/vae1/results.json" "$WORK/vae2/results.json" <<'PY' && pass "results.json: score fid, lower is better; training task 1 lowers its FID; 1 and 2 ranks agree" || fail "results.json"
import json, sys
one, two = (json.load(open(p)) for p in sys.argv[1:3])
assert one["score"] == {"name": "fid", "higher_is_better": False}, one["score"]
m1, m2 = one["fid_matrix"], two["fid_matrix"]
assert m1["stages"][0][0] < m1["initial"][0], (m1["initial"], m1["stages"])
for r1, r2 in zip([m1["initial"]] + m1["stages"], [m2["initial"]] + m2["stages"]):
    for a, b in zip(r1, r2):
        assert abs(a - b) <= 1e-3 * (1 + a), (r1, r2)
assert "final_kl" in one["stages"][0], one["stages"][0]
PY

# The last FID row recomputed without the framework from the saved images (h5py, PyTorch, NumPy:
# Debian's python3-h5py, python3-torch, python3-numpy, which another python3 on PATH may lack).
PYTHON=python3
for candidate in /usr/bin/python3 python3; do
  "$candidate" -c 'import h5py, numpy, torch' 2>/dev/null && { PYTHON=$candidate; break; }
done
SAVED=(--data.root "$FMNIST" --data.stream split --data.tasks 2 --data.classes_per_task 1
       --data.train_samples_per_task 300 --data.test_samples_per_task 0 --model.arch vae --model.vae_hidden 64
       --model.vae_latent 8 --train.epochs 1 --train.batch_size 20 --train.optimizer adam --train.lr 0.005
       --generation.fid_samples 100 --run.threads 1 --generation.save_images true)
if timeout 300 "$TRAIN" "${SAVED[@]}" "${FEATURES[@]}" --output "$WORK/saved" > "$WORK/saved.out" 2>&1 \
   && [ "$(cat "$WORK/saved/samples/fid_images/after_task.txt")" = 2 ] \
   && "$PYTHON" -c "import numpy, sys; a = numpy.load(sys.argv[1]); assert a.shape == (100, 1, 28, 28) and a.dtype == numpy.float32 and 0 <= a.min() and a.max() <= 1, (a.shape, a.dtype)" \
        "$WORK/saved/samples/fid_images/task_2.npy"; then
  pass "generation.save_images: every task's FID images of the last evaluation as .npy"
else fail "saved FID images"; tail -20 "$WORK/saved.out"; ls -R "$WORK/saved/samples"; fi
if "$PYTHON" "$SOURCE_DIR/scripts/recompute_fid.py" "$WORK/saved" > "$WORK/recompute.out" 2>&1 \
   && grep -q "^| 2 | 1 | [0-9.]* | [0-9.]* | " "$WORK/recompute.out"; then
  pass "recompute_fid.py: the run's last FID row recomputed from the saved images ($(tail -1 "$WORK/recompute.out"))"
else fail "recompute_fid.py"; cat "$WORK/recompute.out"; fi

# report --plots on generation runs: FID heatmaps and the mean-FID and BWT curves.
if "$REPORT" "$WORK/vae1" "$WORK/vae2" --plots "$WORK/fid_plots" > "$WORK/fid_plots.out" 2>&1 \
   && [ "$(head -c 4 "$WORK/fid_plots/finetune_fid_matrix.png" | tail -c 3)" = PNG ] \
   && [ "$(head -c 4 "$WORK/fid_plots/fid_after_each_task.png" | tail -c 3)" = PNG ] \
   && [ "$(head -c 4 "$WORK/fid_plots/bwt_after_each_task.png" | tail -c 3)" = PNG ] \
   && grep -q "cblabel 'FID'" "$WORK/fid_plots/plots.gp"; then
  pass "report --plots on generation runs: the FID matrix heatmap, mean FID and BWT after each task"
else fail "report --plots on generation runs"; cat "$WORK/fid_plots.out"; ls "$WORK/fid_plots"; fi

# A generation sweep: the SI strength chosen on validation FID (lower is better), then the report's FID table.
cat > "$WORK/sweep.ini" <<EOF
[sweep]
train_config = $SOURCE_DIR/configs/generation_vae_fmnist.ini
methods = finetune, si
seeds = 1
ranks = 2
threads = 1
options = data.tasks=2 data.train_samples_per_task=300 data.test_samples_per_task=100 model.vae_hidden=64 model.vae_latent=8 train.epochs=2 train.batch_size=20 train.lr=0.005 generation.fid_samples=60 generation.fid_features=$WORK/fid.h5 generation.fid_checksum=$checksum run.progress=off
[grid]
si = si.c: 0.01, 100
EOF
if timeout 400 "$SWEEP" "$WORK/sweep.ini" --output "$WORK/sweep" > "$WORK/sweep.out" 2>&1; then pass "generation sweep"; else
  fail "generation sweep"; tail -20 "$WORK/sweep.out"; fi
fid_a=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['metrics']['acc'])" "$WORK/sweep/grid/si/si.c=0.01/results.json" 2>/dev/null)
fid_b=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['metrics']['acc'])" "$WORK/sweep/grid/si/si.c=100/results.json" 2>/dev/null)
expected=$(awk -v a="${fid_a:-0}" -v b="${fid_b:-0}" 'BEGIN { print (b < a ? "si.c=100" : "si.c=0.01") }')
grep -q "grid si si.c=0.01 ... done in .*, validation mean FID [0-9.]*" "$WORK/sweep.out" \
  && [ "$(awk -F, '$1 == "si" { print $2 }' "$WORK/sweep/chosen.csv")" = "$expected" ] \
  && pass "the sweep chose $expected on validation FID ($fid_a vs $fid_b: lower wins)" \
  || { fail "sweep choice ($fid_a vs $fid_b)"; cat "$WORK/sweep/chosen.csv"; grep "grid si" "$WORK/sweep.out"; }
grep -q "^| method | runs | FWT (paper) | FWT (GEM) | BWT (fid, positive: forgetting) | mean final fid | SMT |$" "$WORK/sweep/report.md" \
  && grep -q "^| si | 1 | " "$WORK/sweep/report.md" && grep -q "^| joint | 1 | " "$WORK/sweep/report.md" \
  && pass "the sweep's report: an FID table with finetune, si and joint rows" || { fail "sweep report"; cat "$WORK/sweep/report.md"; }

# EWC, MAS and ANPyC (consolidation only) on the generator: importance passes on generated images.
for algorithm in "ewc --ewc.fisher_samples 50" "mas" "anpyc --anpyc.prune false" "dgr"; do
  name=${algorithm%% *}
  if timeout 300 "${MPI[@]}" -np 2 "$TRAIN" "${VAE[@]}" "${FEATURES[@]}" --train.algorithm $algorithm \
       --output "$WORK/$name" > "$WORK/$name.out" 2>&1 && [ -s "$WORK/$name/fid_matrix.csv" ]; then
    pass "$name on the VAE, 2 ranks"; else fail "$name on the VAE"; tail -20 "$WORK/$name.out"; fi
done

# The conditional GAN (a WGAN-GP critic with an auxiliary classifier, trained by the GAN objective).
GAN=(--data.root "$FMNIST" --data.stream split --data.tasks 2 --data.classes_per_task 1
     --data.train_samples_per_task 200 --data.test_samples_per_task 100 --model.arch gan --model.width 0.25
     --model.gan_noise 16 --train.epochs 1 --train.batch_size 20 --train.optimizer adam --train.lr 0.001
     --generation.fid_samples 100 --run.threads 1)
for ranks in 1 2; do
  if timeout 300 "${MPI[@]}" -np $ranks "$TRAIN" "${GAN[@]}" "${FEATURES[@]}" --output "$WORK/gan$ranks" > "$WORK/gan$ranks.out" 2>&1; then
    pass "GAN with fine-tuning on $ranks rank(s)"; else fail "GAN on $ranks rank(s)"; tail -20 "$WORK/gan$ranks.out"; fi
done
grep -q "task 1 epoch 1/1: loss -\?[0-9.]*, wasserstein estimate -\?[0-9.]*" "$WORK/gan1.out" \
  && [ -s "$WORK/gan2/samples/after_task_2.png" ] && pass "the GAN's epoch line shows the critic's Wasserstein estimate; sample grids" \
  || { fail "GAN log line or grids"; grep "epoch 1/1" "$WORK/gan1.out"; ls "$WORK/gan2/samples"; }
python3 - "$WORK/gan1/results.json" "$WORK/gan2/results.json" <<'PY' && pass "GAN: 1 and 2 ranks give the same FID matrix" || fail "GAN FID matrices"
import json, sys
one, two = (json.load(open(p))["fid_matrix"] for p in sys.argv[1:3])
for r1, r2 in zip([one["initial"]] + one["stages"], [two["initial"]] + two["stages"]):
    for a, b in zip(r1, r2):
        assert abs(a - b) <= 1e-3 * (1 + a), (r1, r2)
PY
if timeout 300 "${MPI[@]}" -np 2 "$TRAIN" "${GAN[@]}" "${FEATURES[@]}" --train.algorithm anpyc --anpyc.prune false \
     --output "$WORK/gan_anpyc" > "$WORK/gan_anpyc.out" 2>&1 && [ -s "$WORK/gan_anpyc/fid_matrix.csv" ]; then
  pass "ANPyC on the GAN (importance through the critic's auxiliary classifier), 2 ranks"
else fail "ANPyC on the GAN"; tail -20 "$WORK/gan_anpyc.out"; fi
if timeout 300 "${MPI[@]}" -np 2 "$TRAIN" "${GAN[@]}" "${FEATURES[@]}" --train.algorithm dgr \
     --output "$WORK/gan_dgr" > "$WORK/gan_dgr.out" 2>&1 && [ -s "$WORK/gan_dgr/fid_matrix.csv" ]; then
  pass "DGR on the GAN (the objective replays the previous generator's classes), 2 ranks"
else fail "DGR on the GAN"; tail -20 "$WORK/gan_dgr.out"; fi
expect_failure "the GAN with one head per task" "model.heads: the conditional GAN is conditioned on the stream's classes (single)" \
  "${MPI[@]}" -np 2 "$TRAIN" "${GAN[@]}" "${FEATURES[@]}" --model.heads multi --output "$WORK/bad8"

expect_failure "a classification-only algorithm on the VAE" \
  "train.algorithm: lwf needs a classifier; a generation run (model.arch=vae) takes sgd, sgdf, finetune, joint, ewc, si, mas, anpyc, dgr" \
  "${MPI[@]}" -np 2 "$TRAIN" "${VAE[@]}" "${FEATURES[@]}" --train.algorithm lwf --output "$WORK/bad1"
# DGR on a classifier: a VAE trained beside the MLP replays the earlier classes, labelled by the previous MLP.
if timeout 300 "${MPI[@]}" -np 2 "$TRAIN" --data.root "$FMNIST" --data.tasks 2 --data.train_samples_per_task 400 \
     --data.test_samples_per_task 200 --train.algorithm dgr --train.epochs 1 --run.threads 1 --output "$WORK/dgr_mlp" \
     > "$WORK/dgr_mlp.out" 2>&1 && grep -q "1 head(s) .*(single-head layout)" "$WORK/dgr_mlp.out" \
   && [ "$(wc -l < "$WORK/dgr_mlp/accuracy_matrix.csv")" -eq 4 ]; then
  pass "DGR on a classifier (single head, a generator beside it), 2 ranks"
else fail "DGR on a classifier"; tail -20 "$WORK/dgr_mlp.out"; cat "$WORK/dgr_mlp/config.ini" 2>/dev/null | grep heads; fi
expect_failure "DGR on a classifier with one head per task" "model.heads: dgr on a classifier replays images without a task" \
  "${MPI[@]}" -np 2 "$TRAIN" --data.root "$FMNIST" --train.algorithm dgr --model.heads multi --output "$WORK/bad6"
expect_failure "ANPyC's pruning on a generator" "anpyc.prune: pruning is not defined for a generator" \
  "${MPI[@]}" -np 2 "$TRAIN" "${VAE[@]}" "${FEATURES[@]}" --train.algorithm anpyc --output "$WORK/bad4"
expect_failure "SGD-F on the GAN (nothing to train after task 1)" "train.algorithm: sgdf freezes the shared trunk after task 1" \
  "$TRAIN" "${GAN[@]}" --train.algorithm=sgdf --output "$WORK/gan-sgdf"
expect_failure "EWC's true labels on a generator" "ewc.labels: a generator's Fisher draws its labels" \
  "${MPI[@]}" -np 2 "$TRAIN" "${VAE[@]}" "${FEATURES[@]}" --train.algorithm ewc --ewc.labels true --output "$WORK/bad5"
expect_failure "no feature file" "FID feature file $WORK/none.h5 does not exist" \
  "${MPI[@]}" -np 2 "$TRAIN" "${VAE[@]}" --generation.fid_features "$WORK/none.h5" --output "$WORK/bad2"
expect_failure "another checksum pinned" "checksum $checksum, the run expects 0123456789abcdef" \
  "${MPI[@]}" -np 2 "$TRAIN" "${VAE[@]}" --generation.fid_features "$WORK/fid.h5" --generation.fid_checksum 0123456789abcdef --output "$WORK/bad3"
finish
