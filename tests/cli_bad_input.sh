# Bad input of every kind stops every rank with one clear message and a
# non-zero exit: never a hang, never a crash.
source "$(dirname "$0")/cli_lib.sh"
SMALL=(--data.train_samples_per_task=256 --data.test_samples_per_task=128 --output "$WORK/run")

# --- datasets
expect_failure "missing dataset folder" "neither /nonexistent/train-images-idx3-ubyte nor /nonexistent/train-images-idx3-ubyte.gz exists" \
  "$TRAIN" --data.root=/nonexistent "${SMALL[@]}"

mkdir -p "$WORK/badmagic"
cp "$FMNIST"/*labels* "$FMNIST"/t10k-images* "$WORK/badmagic/"
printf 'GIF89a not an idx file' > "$WORK/badmagic/train-images-idx3-ubyte"
expect_failure "wrong magic number" "$WORK/badmagic/train-images-idx3-ubyte: not an IDX file (magic number 47 49 46 38" \
  "$TRAIN" --data.root="$WORK/badmagic" "${SMALL[@]}"

mkdir -p "$WORK/truncated"
cp "$FMNIST"/*labels* "$FMNIST"/t10k-images* "$WORK/truncated/"
head -c 3000000 "$FMNIST/train-images-idx3-ubyte.gz" > "$WORK/truncated/train-images-idx3-ubyte.gz"
expect_failure "truncated gzip" "$WORK/truncated/train-images-idx3-ubyte.gz: corrupt or truncated gzip data" \
  "$TRAIN" --data.root="$WORK/truncated" "${SMALL[@]}"

mkdir -p "$WORK/disagree"
# 2 images of 28x28 but 3 labels.
{ printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c 1568 /dev/zero; } > "$WORK/disagree/train-images-idx3-ubyte"
{ printf '\x00\x00\x08\x01\x00\x00\x00\x03'; printf '\x00\x01\x02'; } > "$WORK/disagree/train-labels-idx1-ubyte"
cp "$FMNIST"/t10k-* "$WORK/disagree/"
expect_failure "image and label counts disagree" "sizes disagree: $WORK/disagree/train-images-idx3-ubyte holds 2 images but $WORK/disagree/train-labels-idx1-ubyte holds 3 labels" \
  "$TRAIN" --data.root="$WORK/disagree" "${SMALL[@]}"

{ printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c 1000 /dev/zero; } > "$WORK/disagree/train-images-idx3-ubyte"
expect_failure "data shorter than header" "train-images-idx3-ubyte: truncated: header promises 1568 data bytes, file holds 1000" \
  "$TRAIN" --data.root="$WORK/disagree" "${SMALL[@]}"

# --- options
expect_failure "unknown option" "unrecognised option '--train.fo=1'" "$TRAIN" --train.fo=1
printf '[train]\nepochs = 1\nlearning_rate = 0.1\n' > "$WORK/unknown.ini"
expect_failure "unknown option in config file" "$WORK/unknown.ini: unrecognised option 'train.learning_rate'" \
  "$TRAIN" --config "$WORK/unknown.ini"
expect_failure "missing config file" "--config: cannot open /nonexistent.ini" "$TRAIN" --config /nonexistent.ini
expect_failure "malformed value" "the argument ('abc') for option '--train.epochs' is invalid" "$TRAIN" --train.epochs=abc
expect_failure "zero tasks" "data.tasks: must be at least 1, got 0" "$TRAIN" --data.tasks=0 "${SMALL[@]}"
expect_failure "more classes per task than exist" "data.classes_per_task: 11 classes per task, but fashion-mnist has only 10 classes" \
  "$TRAIN" --data.classes_per_task=11 "${SMALL[@]}"
expect_failure "more classes than exist" "data.tasks: 6 tasks of 2 classes need 12 classes" "$TRAIN" --data.tasks=6 "${SMALL[@]}"
expect_failure "unknown algorithm" "train.algorithm: 'ewc2' is not one of" "$TRAIN" --train.algorithm=ewc2 "${SMALL[@]}"
expect_failure "zero epochs" "train.epochs: must be at least 1, got 0" "$TRAIN" --train.epochs=0 "${SMALL[@]}"
expect_failure "bad hidden sizes" "model.hidden: 'x' is not a positive layer size" "$TRAIN" --model.hidden=512,x "${SMALL[@]}"

# --- config files and values that cannot be used: refused before anything runs (exit 2)
expect_failure "--config names a directory" "--config: cannot read $WORK: is a directory" "$TRAIN" --config "$WORK" "${SMALL[@]}"
mkfifo "$WORK/pipe.ini"
expect_failure "--config names a named pipe" "--config: cannot read $WORK/pipe.ini: not a regular file" \
  "$TRAIN" --config "$WORK/pipe.ini" "${SMALL[@]}"
expect_failure "value that is not UTF-8 (command line)" "--data.dataset: the value is not valid UTF-8 text (byte 4 of 4)" \
  "$TRAIN" --data.dataset=$'caf\xe9' "${SMALL[@]}"
printf '[data]\ndataset = caf\xe9\n' > "$WORK/latin1.ini"
expect_failure "value that is not UTF-8 (config file)" "--data.dataset: the value is not valid UTF-8 text" \
  "$TRAIN" --config "$WORK/latin1.ini" "${SMALL[@]}"
expect_failure "value with a line break" "--data.dataset: the value holds a control character (byte 2 is 10)" \
  "$TRAIN" --data.dataset=$'a\nb' "${SMALL[@]}"
timeout 60 "$TRAIN" --config "$WORK" "${SMALL[@]}" > /dev/null 2>&1
code=$?
[ "$code" -eq 2 ] && pass "a config file that cannot be read exits with 2" || fail "--config DIR: exit $code, expected 2"
# Every start above failed: the run folder holds nothing (but the lock file .lock, which ls does not list).
[ -z "$(ls "$WORK/run" 2>/dev/null)" ] && pass "nothing written into the run folder by the failed starts" \
  || fail "a failed start wrote $(ls "$WORK/run")"

# --- numbers whose sums and products overflow 64-bit counts: refused, never zero steps and exit 0
MAX=9223372036854775807
expect_failure "batch overflowing sample counts" "train.batch_size: $MAX overflows 64-bit sample counts with the 1280 training samples" \
  "$TRAIN" --train.batch_size=$MAX "${SMALL[@]}"
expect_failure "2 ranks: evaluation batch overflowing sample counts" "eval.batch_size: 9223372036854775806 overflows 64-bit sample counts" \
  "${MPI[@]}" -np 2 "$TRAIN" --eval.batch_size=9223372036854775806 "${SMALL[@]}"
expect_failure "epochs x samples overflowing" "train.epochs: 9000000000000000 epochs of 1280 samples overflow a 64-bit sample count" \
  "$TRAIN" --train.epochs=9000000000000000 "${SMALL[@]}"
expect_failure "bucket size beyond 64-bit bytes" "train.bucket_mb: must be a positive number of MiB, at most 1048576 (1 TiB), got 1e+300" \
  "$TRAIN" --train.bucket_mb=1e300 "${SMALL[@]}"
expect_failure "threads beyond int" "run.threads: must be in [0, 65536]" "$TRAIN" --run.threads=$MAX "${SMALL[@]}"
expect_failure "checkpoints kept beyond int" "run.keep_checkpoints: must be in [1, 2147483647]" \
  "$TRAIN" --run.keep_checkpoints=$MAX "${SMALL[@]}"
expect_failure "timeout beyond any clock" "run.collective_timeout: must be in [0, 1e9] seconds" \
  "$TRAIN" --run.collective_timeout=1e300 "${SMALL[@]}"

# --- the same on 2 ranks: one message, every rank stops
expect_failure "2 ranks: missing dataset" "neither /nonexistent/train-images-idx3-ubyte" \
  "${MPI[@]}" -np 2 "$TRAIN" --data.root=/nonexistent "${SMALL[@]}"
expect_failure "2 ranks: unknown option" "unrecognised option '--train.fo=1'" "${MPI[@]}" -np 2 "$TRAIN" --train.fo=1
expect_failure "2 ranks: batch not divisible by ranks" "train.batch_size: the global batch of 33 is not divisible by the 2 ranks" \
  "${MPI[@]}" -np 2 "$TRAIN" --train.batch_size=33 "${SMALL[@]}"
expect_failure "2 ranks: configuration differs between ranks" \
  "the configuration differs between ranks: rank(s) 1 differ from rank 0; first difference (rank 0 vs rank 1): 'train.lr = 0.01' vs 'train.lr = 0.02'" \
  "${MPI[@]}" -np 2 bash -c '"$0" "$@" --train.lr=0.0$((OMPI_COMM_WORLD_RANK + 1))' "$TRAIN" "${SMALL[@]}"
expect_failure "2 ranks: diverging loss (NaN)" "non-finite training loss" \
  "${MPI[@]}" -np 2 "$TRAIN" --train.lr=1e30 "${SMALL[@]}"
expect_failure "2 ranks: compression schedule not increasing" \
  "anpyc.compression_schedule: round 2's 40 is not above round 1's 50: the percents are cumulative and must increase round by round" \
  "${MPI[@]}" -np 2 "$TRAIN" --train.algorithm=anpyc --anpyc.prune_schedule=compression --anpyc.compression_schedule=50,40 "${SMALL[@]}"
expect_failure "2 ranks: compression of a stream of several tasks" \
  "anpyc.prune_schedule=compression prunes a network trained on one task, this stream has 5" \
  "${MPI[@]}" -np 2 "$TRAIN" --train.algorithm=anpyc --anpyc.prune_schedule=compression "${SMALL[@]}"

# --- help works and names every section
timeout 60 "$TRAIN" --help > "$WORK/help.txt" 2>&1 && grep -q "train.algorithm" "$WORK/help.txt" && grep -q "data.permute_first" "$WORK/help.txt" \
  && pass "--help lists the options" || fail "--help"

finish
