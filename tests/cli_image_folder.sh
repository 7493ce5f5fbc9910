#!/usr/bin/env bash
# The image-folder path through `train` as a user runs it: a synthetic tree
# written by make_image_tree (JPEG and PNG files of several sizes), a
# class-incremental stream with augmentation on 1 and 2 ranks, a resume from
# a mid-task checkpoint equal to the uninterrupted run, and the bad-input
# messages (corrupt or non-image file, empty class folder, too few classes,
# missing root). Needs TRAIN, MAKE_IMAGE_TREE, MPIRUN, SOURCE_DIR.
source "$(dirname "$0")/cli_lib.sh"

run_ok() {  # run_ok NAME COMMAND...
  local name=$1 log=${1// /_}; shift
  if timeout 300 "$@" > "$WORK/$log.out" 2> "$WORK/$log.err"; then pass "$name"; else
    fail "$name (exit $?)"; tail -20 "$WORK/$log.err"; fi
}

TREE="$WORK/tree"
"$MAKE_IMAGE_TREE" "$TREE" --classes 6 --images 24 --side 24 > "$WORK/tree.out" 2>&1 \
  && grep -q "wrote 150 images in 6 class folders" "$WORK/tree.out" && pass "make_image_tree: 6 classes, 150 images" \
  || { fail "make_image_tree"; cat "$WORK/tree.out"; finish; exit 1; }

# An MLP (no BatchNorm), so 2 ranks follow the 1-rank trajectory up to float summation order. One
# growing head (class-incremental evaluation), so that the accuracies do not all saturate at 100%.
RUN=(--config "$SOURCE_DIR/configs/image_folder_synthetic.ini" --data.tasks=3 --data.task_classes=3,2,1
     --data.image_size=16 --data.workers=2 --model.arch=mlp --model.hidden=64 --model.heads=single --train.epochs=2
     --train.batch_size=16 --train.lr=0.05 --run.progress=off)
# final_losses RUN_DIR: the mean training loss of each stage's last epoch, from results.json.
final_losses() { python3 -c 'import json,sys; print(" ".join(repr(s["final_loss"]) for s in json.load(open(sys.argv[1]))["stages"]))' "$1/results.json"; }

run_ok "1 rank" "$TRAIN" "${RUN[@]}" --data.root="$TREE" --run.checkpoint_every_steps=3 --run.keep_checkpoints=1000 --output "$WORK/one"
run_ok "2 ranks" "${MPI[@]}" -np 2 "$TRAIN" "${RUN[@]}" --data.root="$TREE" --output "$WORK/two"
if paste -d, "$WORK/one/accuracy_matrix.csv" "$WORK/two/accuracy_matrix.csv" |
   awk -F, 'NR>1 { n=NF/2; for (i=2;i<=n;i++) { d=$i-$(i+n); if (d<0) d=-d; if (d>0.005) bad=1 } } END { exit bad }'; then
  pass "2 ranks give the 1-rank accuracy matrix (augmented batches): $(tail -1 "$WORK/one/accuracy_matrix.csv")"
else
  fail "1 vs 2 ranks differ"; paste -d'|' "$WORK/one/accuracy_matrix.csv" "$WORK/two/accuracy_matrix.csv"
fi
python3 - "$(final_losses "$WORK/one")" "$(final_losses "$WORK/two")" <<'PY' && pass "2 ranks give the 1-rank training losses" || fail "1 vs 2 ranks: training losses differ"
import sys
one, two = ([float(x) for x in arg.split()] for arg in sys.argv[1:])
assert len(one) == 3 and len(two) == 3 and all(abs(a - b) <= 1e-4 * max(1.0, abs(a)) for a, b in zip(one, two)), (one, two)
PY
grep -q "class_incremental synthetic-tree: 3 tasks of 3,2,1 classes" "$WORK/one/train.log" \
  && pass "log names the class-incremental stream" || fail "stream description in train.log"
awk -F, '$1 == "after_task_1" { exit !($2 > 0.6) }' "$WORK/one/accuracy_matrix.csv" \
  && pass "task 1 learnt (above 60%, chance 33%)" || { fail "task 1 not learnt"; cat "$WORK/one/accuracy_matrix.csv"; }

# The augmented batches are what training sees: without augmentation the same run ends elsewhere.
run_ok "1 rank without augmentation" "$TRAIN" "${RUN[@]}" --data.root="$TREE" --data.augment=none --output "$WORK/plain"
[ "$(final_losses "$WORK/one")" != "$(final_losses "$WORK/plain")" ] \
  && pass "flip_crop changes the training losses" || fail "data.augment=flip_crop changed nothing"

# Reading the next batch on a helper thread (data.prefetch, on by default) changes no value.
run_ok "1 rank without prefetching" "$TRAIN" "${RUN[@]}" --data.root="$TREE" --data.prefetch=false --output "$WORK/serial"
cmp -s "$WORK/one/accuracy_matrix.csv" "$WORK/serial/accuracy_matrix.csv" \
  && [ "$(final_losses "$WORK/one")" = "$(final_losses "$WORK/serial")" ] \
  && pass "data.prefetch=false gives the same accuracy matrix and losses, byte for byte" \
  || fail "data.prefetch changed the results"

# Resume from a checkpoint in the middle of task 2: the accuracy matrix must be the uninterrupted run's, byte for byte.
file=$(grep -o "checkpoint [^ ]* (training, stage 2[^)]*)" "$WORK/one/train.log" | sed -n 2p | awk '{print $2}')
dir="$WORK/resumed"
mkdir -p "$dir/checkpoints"
cp "$WORK/one/config.ini" "$dir/"
[ -n "$file" ] && cp "$file" "$dir/checkpoints/" && basename "$file" > "$dir/checkpoints/latest"
if [ -n "$file" ] && timeout 300 "$TRAIN" --resume "$dir" --run.progress=off > "$dir.out" 2>&1 \
   && cmp -s "$WORK/one/accuracy_matrix.csv" "$dir/accuracy_matrix.csv" \
   && [ "$(final_losses "$WORK/one")" = "$(final_losses "$dir")" ]; then
  pass "resumed mid-task 2 ($(grep -o 'resumed from a checkpoint: [^;]*' "$dir/train.log")): same accuracy matrix and losses"
else
  fail "resume: accuracy matrix differs or the run failed (checkpoint '$file')"; tail -5 "$dir.out"
fi

# A narrow ResNet-18 at 32 px on 2 ranks, the shape of the Caltech-101 config.
run_ok "resnet18 (eighth width, 32 px) on 2 ranks" "${MPI[@]}" -np 2 "$TRAIN" \
  --config "$SOURCE_DIR/configs/image_folder_synthetic.ini" --data.root="$TREE" --data.tasks=2 --data.task_classes=3,3 \
  --train.epochs=1 --run.progress=off --output "$WORK/resnet"
[ "$(wc -l < "$WORK/resnet/accuracy_matrix.csv" 2>/dev/null)" = 4 ] && pass "resnet18: header, initial, 2 stages" \
  || fail "resnet18 accuracy matrix"

# Bad input: one message naming the file or folder, before any training.
BAD="$WORK/bad_tree"
cp -r "$TREE" "$BAD"
printf '\xff\xd8\xff\xe0garbage' > "$BAD/class_02/broken.jpg"
expect_failure "corrupt JPEG" "$BAD/class_02/broken.jpg: corrupt image" \
  "${MPI[@]}" -np 2 "$TRAIN" "${RUN[@]}" --data.root="$BAD" --output "$WORK/bad"
run_ok "data.bad_images=skip trains without it" "$TRAIN" "${RUN[@]}" --data.root="$BAD" --data.bad_images=skip \
  --output "$WORK/skip"
grep -q "warning: data.bad_images=skip: left out $BAD/class_02/broken.jpg: corrupt image" "$WORK/skip/train.log" \
  && pass "skip: the warning names the file" || fail "skip warning"
rm "$BAD/class_02/broken.jpg"
echo "notes" > "$BAD/class_01/notes.txt"
expect_failure "non-image file" "$BAD/class_01/notes.txt: not an image file" "$TRAIN" "${RUN[@]}" --data.root="$BAD" --output "$WORK/bad"
rm "$BAD/class_01/notes.txt"
mkdir "$BAD/class_99"
expect_failure "empty class folder" "class folder $BAD/class_99 is empty" "$TRAIN" "${RUN[@]}" --data.root="$BAD" --output "$WORK/bad"
rmdir "$BAD/class_99"
expect_failure "fewer classes than the stream needs" "need 8 classes, but synthetic-tree ($BAD) has only 6" \
  "${MPI[@]}" -np 2 "$TRAIN" --config "$SOURCE_DIR/configs/image_folder_synthetic.ini" --data.root="$BAD" \
  --data.task_classes=3,3,2 --output "$WORK/bad"
expect_failure "missing root" "data.root: $WORK/nowhere does not exist" "$TRAIN" "${RUN[@]}" --data.root="$WORK/nowhere" --output "$WORK/bad"
expect_failure "bad data.channels before any data is read" "data.channels: must be 1 (grey) or 3 (RGB), got 2" \
  "$TRAIN" "${RUN[@]}" --data.root="$WORK/nowhere" --data.channels=2 --output "$WORK/bad"
expect_failure "augmentation of IDX data" "data.augment: flip_crop needs data.format=image_folder" \
  "$TRAIN" --config "$SOURCE_DIR/configs/split_fmnist.ini" --data.augment=flip_crop --output "$WORK/bad"
finish
