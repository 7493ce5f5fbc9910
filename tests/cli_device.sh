# Device, precision and learning-rate options as a user meets them: bad
# values stop with one message before the run folder is touched; bf16 trains
# on the CPU; a run asked for a GPU on a machine without one says why.
source "$(dirname "$0")/cli_lib.sh"
SMALL=(--data.tasks=2 --data.train_samples_per_task=1024 --data.test_samples_per_task=256 --train.epochs=1)

# expect_untouched NAME: the refused run created nothing at its --output folder.
expect_untouched() {
  if [ -e "$WORK/$1" ]; then fail "$1: the refused run wrote $(ls "$WORK/$1" | tr '\n' ' ')"; else pass "$1: run folder untouched"; fi
}

expect_failure "unknown device" "run.device: 'tpu' is not one of auto, cpu, cuda" \
  "$TRAIN" "${SMALL[@]}" --run.device=tpu --output "$WORK/tpu"
expect_untouched tpu
if [ ! -e /dev/nvidia0 ]; then
  expect_failure "cuda without a GPU" "run.device=cuda: no CUDA device is visible to this process" \
    "$TRAIN" "${SMALL[@]}" --run.device=cuda --output "$WORK/cuda"
  expect_untouched cuda
  expect_failure "cuda without a GPU, 2 ranks" "run.device=cuda: no CUDA device is visible to this process" \
    "${MPI[@]}" -np 2 "$TRAIN" "${SMALL[@]}" --run.device=cuda --output "$WORK/cuda2"
  expect_untouched cuda2
fi
expect_failure "nccl on the CPU" "run.backend=nccl carries CUDA tensors only; it needs run.device=cuda" \
  "$TRAIN" "${SMALL[@]}" --run.device=cpu --run.backend=nccl --output "$WORK/nccl"
expect_untouched nccl
expect_failure "unknown optimizer" "train.optimizer: 'rmsprop' is not one of sgd, adam" \
  "$TRAIN" "${SMALL[@]}" --train.optimizer=rmsprop --output "$WORK/rmsprop"
expect_failure "unknown evaluation split" "eval.split: 'train' is not one of test, validation" \
  "$TRAIN" "${SMALL[@]}" --eval.split=train --output "$WORK/evaltrain"
expect_failure "unknown precision" "train.precision: 'fp16' is not one of fp32, bf16" \
  "$TRAIN" "${SMALL[@]}" --train.precision=fp16 --output "$WORK/fp16"
expect_failure "learning-rate decay above 1" "train.lr_decay: must be in (0, 1]" \
  "$TRAIN" "${SMALL[@]}" --train.lr_decay=1.5 --output "$WORK/decay"
expect_failure "learning-rate decay period 0" "train.lr_decay_epochs: must be at least 1, got 0" \
  "$TRAIN" "${SMALL[@]}" --train.lr_decay_epochs=0 --output "$WORK/period"
expect_failure "Adam betas not a pair" "train.adam_betas: expected two numbers \"beta1,beta2\"" \
  "$TRAIN" "${SMALL[@]}" --train.optimizer=adam --train.adam_betas=0.5 --output "$WORK/betas"
expect_failure "Adam beta of 1" "train.adam_betas: both betas must be in [0, 1)" \
  "$TRAIN" "${SMALL[@]}" --train.optimizer=adam --train.adam_betas=0.5,1 --output "$WORK/betas1"

# bf16 autocast on the CPU learns the first task (T-shirt vs trouser) as fp32 does.
if "$TRAIN" "${SMALL[@]}" --train.precision=bf16 --run.device=cpu --train.lr=0.05 --output "$WORK/bf16" \
    >"$WORK/bf16.txt" 2>&1; then
  accuracy=$(awk -F, 'NR==3 {print $2}' "$WORK/bf16/accuracy_matrix.csv")
  if awk -v a="$accuracy" 'BEGIN {exit !(a > 0.9)}'; then pass "bf16 on the CPU: task 1 accuracy $accuracy > 0.9"
  else fail "bf16 on the CPU: task 1 accuracy $accuracy"; fi
  grep -q "on cpu (bf16 autocast)" "$WORK/bf16/train.log" && pass "bf16: the log says so" || fail "bf16: the log does not say bf16"
else
  fail "bf16 run exited non-zero"; sed 's/^/    /' "$WORK/bf16.txt" | tail -5
fi

# The decayed learning rate is in the epoch lines.
"$TRAIN" --data.tasks=1 --data.train_samples_per_task=1024 --data.test_samples_per_task=256 --train.epochs=3 --train.lr=0.08 --train.lr_decay=0.5 --train.lr_decay_epochs=2 \
  --output "$WORK/decay_ok" >"$WORK/decay_ok.txt" 2>&1
lrs=$(grep -o "epoch [0-9]/3: .*, lr [0-9.e-]*" "$WORK/decay_ok/train.log" | sed 's/.*, lr //' | tr '\n' ' ')
[ "$lrs" = "0.08 0.08 0.04 " ] && pass "learning rate per epoch: $lrs" || fail "learning rate per epoch: '$lrs', expected '0.08 0.08 0.04 '"
finish
