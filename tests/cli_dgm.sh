# DGM (model.arch=dgm, train.algorithm=dgm; docs/dgm.md) as a user runs it, on
# real Fashion-MNIST: DGMw on 2 ranks over three one-class tasks (the
# generator grows after tasks 1 and 2) with FID from a feature file, resumed
# from a checkpoint in the middle of task 3 (after both expansions) into a
# fresh run folder: the same accuracy matrix, FID matrix and generator sizes;
# DGMa on 1 rank; and the refusals. Needs TRAIN, FID_FEATURES, MPIRUN, SOURCE_DIR.
source "$(dirname "$0")/cli_lib.sh"

timeout 120 "$FID_FEATURES" --epochs 1 --train-samples 600 --test-samples 100 --threads 1 --output "$WORK/fid.h5" \
  > "$WORK/fid.out" 2>&1 && pass "fid-features made a feature file" || { fail "fid-features"; cat "$WORK/fid.out"; }

BASE=(--config "$SOURCE_DIR/configs/dgm_fmnist.ini" --data.train_samples_per_task=192
     --data.test_samples_per_task=100 --train.epochs=2 --train.batch_size=32 --run.threads=1 --run.progress=off)
RUN=("${BASE[@]}" --data.tasks=3 --generation.fid_features="$WORK/fid.h5" --generation.fid_samples=100)

timeout 300 "${MPI[@]}" -np 2 "$TRAIN" "${RUN[@]}" --run.checkpoint_every_steps=5 --run.keep_checkpoints=1000 \
  --output "$WORK/reference" > "$WORK/reference.out" 2>&1 && pass "DGMw on 2 ranks, a checkpoint every 5 steps" \
  || { fail "DGMw reference run"; tail -20 "$WORK/reference.out"; finish; exit 1; }
grep -q "dgm: the generator grows by conv1" "$WORK/reference/train.log" && pass "the generator grew after a task" \
  || fail "no growth line in the log"
[ -s "$WORK/reference/samples/after_task_3.png" ] && pass "sample grid after task 3 written" \
  || { fail "no sample grid"; ls "$WORK/reference"; }
[ "$(wc -l < "$WORK/reference/fid_matrix.csv")" -eq 5 ] && [ -s "$WORK/reference/generated_accuracy.csv" ] \
  && pass "fid_matrix.csv (initial + 3 tasks) and generated_accuracy.csv" \
  || { fail "FID tables"; cat "$WORK/reference/fid_matrix.csv"; }
[ "$(wc -l < "$WORK/reference/dgm_generator.csv")" -eq 10 ] && pass "dgm_generator.csv: 3 tasks x 3 layers" \
  || { fail "dgm_generator.csv"; cat "$WORK/reference/dgm_generator.csv"; }

# The first checkpoint taken during task 3's training: after both expansions.
file=$(grep -o "checkpoint [^ ]* (training, stage 3[^)]*)" "$WORK/reference/train.log" | sed -n 2p | awk '{print $2}')
if [ -z "$file" ]; then
  fail "no mid-task-3 checkpoint in the log"; grep checkpoint "$WORK/reference/train.log" | head
else
  dir="$WORK/resumed"
  mkdir -p "$dir/checkpoints"
  cp "$WORK/reference/config.ini" "$dir/"
  cp "$file" "$dir/checkpoints/"
  basename "$file" > "$dir/checkpoints/latest"
  if timeout 300 "${MPI[@]}" -np 2 "$TRAIN" --resume "$dir" --run.progress=off > "$dir.out" 2>&1 \
     && cmp -s "$WORK/reference/accuracy_matrix.csv" "$dir/accuracy_matrix.csv" \
     && cmp -s "$WORK/reference/dgm_generator.csv" "$dir/dgm_generator.csv" \
     && cmp -s "$WORK/reference/fid_matrix.csv" "$dir/fid_matrix.csv"; then
    pass "resumed mid-task 3 after two expansions: same matrix, FID matrix and generator sizes ($(grep -o 'resumed from a checkpoint: .*' "$dir/train.log"))"
  else
    fail "resume after an expansion"; tail -5 "$dir.out"; paste -d'|' "$WORK/reference/accuracy_matrix.csv" "$dir/accuracy_matrix.csv"
  fi
fi

timeout 300 "$TRAIN" "${BASE[@]}" --data.tasks=2 --dgm.masks=units --output "$WORK/units" > "$WORK/units.out" 2>&1 \
  && grep -q "ACC" "$WORK/units.out" && pass "DGMa on 1 rank: $(grep -o 'ACC [0-9.]*' "$WORK/units.out")" \
  || { fail "DGMa run"; tail -5 "$WORK/units.out"; }

SMALL=("${BASE[@]}" --data.tasks=2)
expect_failure "DGM's generator with another algorithm" "train.algorithm: model.arch=dgm is trained by train.algorithm=dgm only" \
  "$TRAIN" "${SMALL[@]}" --train.algorithm=ewc --output "$WORK/bad1"
expect_failure "DGM on a classifier" "model.arch: train.algorithm=dgm trains DGM's generator, model.arch=dgm" \
  "$TRAIN" "${SMALL[@]}" --model.arch=mlp --output "$WORK/bad2"
expect_failure "DGM on a task-incremental stream" "train.algorithm=dgm: class-incremental only" \
  "$TRAIN" "${SMALL[@]}" --data.stream=permuted --output "$WORK/bad3"
expect_failure "unknown mask kind" "dgm.masks: 'channels' is not one of weights (DGMw), units (DGMa)" \
  "$TRAIN" "${SMALL[@]}" --dgm.masks=channels --output "$WORK/bad4"
expect_failure "growth beyond dgm.max_units" "dgm.max_units: after task 1 conv1 would grow from 24 to" \
  "${MPI[@]}" -np 2 "$TRAIN" "${SMALL[@]}" --dgm.max_units=25 --output "$WORK/bad5"
expect_failure "one head per task" "model.heads: DGM is class-incremental" \
  "$TRAIN" "${SMALL[@]}" --model.heads=multi --output "$WORK/bad6"
expect_failure "a missing FID feature file" "$WORK/none.h5" \
  "$TRAIN" "${SMALL[@]}" --generation.fid_features="$WORK/none.h5" --output "$WORK/bad7"
finish
