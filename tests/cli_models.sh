# The convolutional networks through `train` on real Fashion-MNIST (small
# subsets, narrow networks so the suite stays fast): VGG-9 with ANPyC pruning
# and with EWC on 1 and 2 ranks, ResNet-18 (BatchNorm) with EWC on 2 ranks,
# and the model options' errors. Then a multi-dataset stream: Fashion-MNIST,
# then digits in scikit-learn's format written here, resized to 28x28.
source "$(dirname "$0")/cli_lib.sh"
SMALL=(--data.tasks=2 --data.train_samples_per_task=1000 --data.test_samples_per_task=200 --train.epochs=2
       --train.batch_size=32 --train.lr=0.02 --run.progress=off)

run_ok() {  # run_ok NAME COMMAND...
  local name=$1 log=${1// /_}; shift
  if timeout 300 "$@" > "$WORK/$log.out" 2> "$WORK/$log.err"; then pass "$name"; else
    fail "$name (exit $?)"; tail -20 "$WORK/$log.err"; fi
}

VGG=(--config "$SOURCE_DIR/configs/split_fmnist_vgg9.ini" "${SMALL[@]}" --model.width=0.25)
run_ok "vgg9 anpyc 2 ranks" "${MPI[@]}" -np 2 "$TRAIN" "${VGG[@]}" --train.algorithm=anpyc --anpyc.first_budget=0.2 \
  --anpyc.retrain_epochs=1 --output "$WORK/vgg_anpyc"
[ "$(wc -l < "$WORK/vgg_anpyc/accuracy_matrix.csv" 2>/dev/null)" = 4 ] && pass "vgg9 anpyc: header, initial, 2 stages" \
  || fail "vgg9 anpyc accuracy matrix"
grep -q "trunk.12.weight: used [0-9]*, free [1-9]" "$WORK/vgg_anpyc/train.log" \
  && pass "vgg9 anpyc: pruning freed part of a 4-D convolution weight" || fail "vgg9 anpyc: no conv mask report"
ls "$WORK/vgg_anpyc/checkpoints/"*.h5 > /dev/null 2>&1 && pass "vgg9 anpyc: checkpoints written" || fail "vgg9 anpyc checkpoints"

# One thread per rank in both runs: with the default (cores / ranks) the
# 1-rank run's convolutions sum in another order than the 2-rank run's, and
# that alone moved task 1 by 2.5 points after task 2 here (0.605 vs 0.58).
run_ok "vgg9 ewc 1 rank" "$TRAIN" "${VGG[@]}" --train.algorithm=ewc --ewc.lambda=10 --ewc.fisher_samples=300 \
  --run.threads=1 --output "$WORK/vgg_ewc1"
run_ok "vgg9 ewc 2 ranks" "${MPI[@]}" -np 2 "$TRAIN" "${VGG[@]}" --train.algorithm=ewc --ewc.lambda=10 \
  --ewc.fisher_samples=300 --run.threads=1 --output "$WORK/vgg_ewc2"
# No BatchNorm: 2 ranks follow the 1-rank trajectory up to float summation
# order, which 128 steps of a conv net amplify more than the MLP's: measured
# 0.5 points (1 of 200 test samples) on one machine and 1.5 on another, so
# the bound is 2 points here, on the initial row and on every task already
# trained. A task not trained yet is answered by its random head on moving
# features, near ties that the summation order flips: task 2 after task 1
# read 60.0 on 1 rank and 57.5 on 2 (2026-12-02), the trained entries within
# 0.5 points. Those entries are left out.
if paste -d, "$WORK/vgg_ewc1/accuracy_matrix.csv" "$WORK/vgg_ewc2/accuracy_matrix.csv" |
   awk -F, 'NR>1 { n=NF/2; last=(NR==2 ? n : NR-1); for (i=2;i<=last;i++) { d=$i-$(i+n); if (d<0) d=-d; if (d>0.02) bad=1 } }
            END { exit bad }'; then
  pass "vgg9 ewc: 2 ranks give the 1-rank accuracy matrix"; else fail "vgg9 ewc: 1 vs 2 ranks differ"
  paste -d'|' "$WORK/vgg_ewc1/accuracy_matrix.csv" "$WORK/vgg_ewc2/accuracy_matrix.csv"; fi
# 64 steps on task 1 take the quarter-width VGG-9 well above chance (50%).
awk -F, '$1 == "after_task_1" { exit !($2 > 0.6) }' "$WORK/vgg_ewc1/accuracy_matrix.csv" \
  && pass "vgg9 ewc: task 1 learnt (above 60%)" || { fail "vgg9 ewc: task 1 not learnt"; cat "$WORK/vgg_ewc1/accuracy_matrix.csv"; }

run_ok "resnet18 ewc 2 ranks (BatchNorm buffers averaged, fingerprints agree)" "${MPI[@]}" -np 2 "$TRAIN" \
  --config "$SOURCE_DIR/configs/split_fmnist_vgg9.ini" "${SMALL[@]}" --model.arch=resnet18 --model.width=0.125 \
  --train.algorithm=ewc --ewc.lambda=10 --ewc.fisher_samples=200 --output "$WORK/resnet"
grep -q "shared trunk 175" "$WORK/resnet/train.log" && pass "resnet18: eighth width has 175k trunk parameters" \
  || { fail "resnet18 trunk size"; grep "model:" "$WORK/resnet/train.log"; }

expect_failure "unknown model.arch" "model.arch: 'alexnet' is not one of mlp, lenet, vgg9, resnet18" \
  "$TRAIN" --config "$SOURCE_DIR/configs/split_fmnist.ini" --model.arch=alexnet --output "$WORK/bad"
expect_failure "bad model.stem" "model.stem: 'huge' is not one of auto, small, imagenet" \
  "${MPI[@]}" -np 2 "$TRAIN" --config "$SOURCE_DIR/configs/split_fmnist.ini" --model.arch=resnet18 --model.stem=huge \
  --output "$WORK/bad"
expect_failure "bad model.width" "model.width: must be a positive channel multiplier" \
  "$TRAIN" --config "$SOURCE_DIR/configs/split_fmnist.ini" --model.arch=vgg9 --model.width=0 --output "$WORK/bad"


# --- multi_dataset: Fashion-MNIST, then a digits.csv written here (10 classes, 8x8, values 0..16)
python3 - "$WORK/digits.csv" <<'PY'
import random, sys
random.seed(3)
with open(sys.argv[1], "w") as out:
    for row in range(300):
        label = row % 10
        # noise 0..4, row (k mod 8) of the 8x8 image bright; classes 8 and 9 also mark pixel 0 or 4
        pixels = [random.randint(0, 4) for _ in range(64)]
        for c in range(8): pixels[8 * (label % 8) + c] = 16 if label < 8 else 12
        if label >= 8: pixels[(label - 8) * 4] = 16
        out.write(",".join(map(str, pixels + [label])) + "\n")
PY
MULTI=(--config "$SOURCE_DIR/configs/fmnist_digits.ini" --data.train_samples_per_task=1000 --data.test_samples_per_task=200
       --train.epochs=3 --train.batch_size=32 --run.progress=off)
run_ok "multi_dataset 2 ranks" "${MPI[@]}" -np 2 "$TRAIN" "${MULTI[@]}" \
  "--data.datasets=idx:/usr/share/datasets/fashion-mnist, digits:$WORK/digits.csv" --output "$WORK/multi"
grep -q "multi_dataset 2 tasks (fashion-mnist, digits)" "$WORK/multi/train.log" \
  && grep -q "data per task (training / test samples): 1: 1000 / 200, 2: 210 / 90" "$WORK/multi/train.log" \
  && pass "multi_dataset: one task per dataset, digits split 7:3 per class (210 / 90)" \
  || { fail "multi_dataset: stream description or sizes"; grep -E "multi_dataset|data per task" "$WORK/multi/train.log"; }
awk -F, '$1 == "after_task_2" { exit !($3 > 0.5) }' "$WORK/multi/accuracy_matrix.csv" \
  && pass "multi_dataset: the digits task learnt (above 50%, chance 10%)" \
  || { fail "multi_dataset: digits not learnt"; cat "$WORK/multi/accuracy_matrix.csv"; }
expect_failure "multi_dataset: data.tasks differs from the list" \
  "data.tasks: 3, but data.datasets lists 2 datasets (one task per dataset)" \
  "$TRAIN" "${MULTI[@]}" --data.tasks=3 "--data.datasets=idx:/usr/share/datasets/fashion-mnist, digits:$WORK/digits.csv" \
  --output "$WORK/bad"
python3 -c "print(','.join(['0'] * 64))" > "$WORK/digits_bad.csv"  # 64 pixels, no label
expect_failure "multi_dataset: a digits line without its label" "digits_bad.csv, line 1: 64 values" \
  "$TRAIN" "${MULTI[@]}" "--data.datasets=idx:/usr/share/datasets/fashion-mnist, digits:$WORK/digits_bad.csv" \
  --output "$WORK/bad"

finish
