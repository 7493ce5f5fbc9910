#!/usr/bin/env bash
# The five-dataset sequence (configs/five_datasets_vgg9.ini) as a user runs
# it, on stand-ins written by make-five-datasets in the real files' formats
# (gzipped IDX, PNG letter folders with one unreadable file, SVHN .mat,
# STL-10 and CIFAR-10 binaries): VGG-9 on 2 ranks through all five tasks, an
# MLP that learns every task (so every loader pairs images with their
# labels), and the messages for a missing or damaged file.
# Needs TRAIN, MAKE_FIVE_DATASETS, MPIRUN, SOURCE_DIR.
source "$(dirname "$0")/cli_lib.sh"

run_ok() {  # run_ok NAME COMMAND...
  local name=$1 log=${1// /_}; shift
  if timeout 300 "$@" > "$WORK/$log.out" 2> "$WORK/$log.err"; then pass "$name"; else
    fail "$name (exit $?)"; tail -20 "$WORK/$log.err"; fi
}

"$MAKE_FIVE_DATASETS" --help | grep -q "Usage: make-five-datasets ROOT" && pass "make-five-datasets --help" \
  || fail "make-five-datasets --help"
ROOT="$WORK/five"
"$MAKE_FIVE_DATASETS" "$ROOT" --train-per-class 30 --test-per-class 10 > "$WORK/make.out" 2>&1 \
  && grep -q "wrote 417 files under $ROOT" "$WORK/make.out" \
  && pass "make-five-datasets: $(head -1 "$WORK/make.out" | cut -c1-100)" \
  || { fail "make-five-datasets"; cat "$WORK/make.out"; finish; exit 1; }
for file in mnist/train-images-idx3-ubyte.gz mnist/t10k-labels-idx1-ubyte.gz notMNIST_small/J/b00099.png \
            notMNIST_small/A/damaged.png svhn/train_32x32.mat svhn/test_32x32.mat stl10_binary/train_X.bin \
            stl10_binary/test_y.bin cifar-10-batches-bin/data_batch_5.bin cifar-10-batches-bin/test_batch.bin; do
  [ -s "$ROOT/$file" ] || fail "make-five-datasets wrote no $file"
done
[ "$(stat -c %s "$ROOT/stl10_binary/train_X.bin")" = $((300 * 27648)) ] && [ "$(stat -c %s "$ROOT/cifar-10-batches-bin/test_batch.bin")" = $((100 * 3073)) ] \
  && pass "STL-10 and CIFAR-10 files hold 27648-byte images and 3073-byte records" || fail "STL-10/CIFAR-10 file sizes"
expect_failure "make-five-datasets refuses a folder that is not empty" "exists and is not empty" "$MAKE_FIVE_DATASETS" "$ROOT"

DATASETS="idx:$ROOT/mnist, image_folder:$ROOT/notMNIST_small, svhn:$ROOT/svhn, stl10:$ROOT/stl10_binary, cifar10:$ROOT/cifar-10-batches-bin"
RUN=(--config "$SOURCE_DIR/configs/five_datasets_vgg9.ini" --data.datasets="$DATASETS" --train.batch_size=32 --run.progress=off)

# The config itself on 2 ranks: VGG-9 at a quarter of its channels, one epoch a task.
run_ok "VGG-9 (quarter width) through the five tasks on 2 ranks" "${MPI[@]}" -np 2 "$TRAIN" "${RUN[@]}" \
  --model.width=0.25 --train.epochs=1 --output "$WORK/vgg"
[ "$(wc -l < "$WORK/vgg/accuracy_matrix.csv" 2>/dev/null)" = 7 ] && pass "accuracy matrix: header, initial, 5 stages" \
  || { fail "VGG-9 accuracy matrix"; cat "$WORK/vgg/accuracy_matrix.csv"; }
for name in mnist notMNIST_small svhn stl10_binary cifar-10-batches-bin; do
  grep -q "($name)" "$WORK/vgg/train.log" || fail "train.log does not name the task of $name"
done
grep -q "data.bad_images=skip: left out 1 of 401 files in $ROOT/notMNIST_small" "$WORK/vgg/train.log" \
  && grep -q "left out .*damaged.png" "$WORK/vgg/train.log" \
  && pass "the unreadable notMNIST file is left out, counted and named" \
  || { fail "bad_images=skip warning"; grep -i "left out" "$WORK/vgg/train.log"; }

# An MLP learns every task: each loader pairs every image with its own label.
run_ok "MLP through the five tasks on 1 rank" "$TRAIN" "${RUN[@]}" --model.arch=mlp --model.hidden=64 \
  --train.epochs=4 --train.lr=0.1 --output "$WORK/mlp"
python3 - "$WORK/mlp/accuracy_matrix.csv" <<'PY' && pass "MLP: every task above 70% right after training it (chance 10%)" || fail "MLP did not learn every task"
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))[2:]  # after header and the initial row
learnt = [float(rows[t][t + 1]) for t in range(5)]
print("    accuracy of each task right after training it:", learnt)
assert all(value > 0.7 for value in learnt), learnt
PY

# Bad input: one message naming the file.
rm "$ROOT/svhn/test_32x32.mat"
expect_failure "a missing SVHN file names it" "$ROOT/svhn/test_32x32.mat" "$TRAIN" "${RUN[@]}" --output "$WORK/bad1"
head -c 1000 "$ROOT/cifar-10-batches-bin/data_batch_2.bin" > "$WORK/cut.bin" && mv "$WORK/cut.bin" "$ROOT/cifar-10-batches-bin/data_batch_2.bin"
"$MAKE_FIVE_DATASETS" "$WORK/again" --train-per-class 2 --test-per-class 1 --no-damaged-file > /dev/null \
  && cp "$WORK/again/svhn/test_32x32.mat" "$ROOT/svhn/"
expect_failure "a cut CIFAR-10 batch names it" "data_batch_2.bin" "$TRAIN" "${RUN[@]}" --output "$WORK/bad2"
finish
