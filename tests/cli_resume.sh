# Checkpoints, exact resume, preemption and a killed rank, as a user meets them.
source "$(dirname "$0")/cli_lib.sh"
# wait_for FILE PATTERN: up to 20 s for PATTERN to appear in FILE.
wait_for() { for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# rank_pid MPIRUN_PID RANK: the process of that rank among mpirun's children.
rank_pid() {
  local child
  for child in $(pgrep -P "$1"); do
    tr '\0' '\n' < /proc/$child/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$child"
  done
}
# A small ANPyC-with-pruning sequence on 2 ranks: pruning retrains inside after_task,
# so checkpoints land between tasks, mid-epoch and mid-pruning; the proximal
# penalty step reads the learning rate of each step, which a resume must restore.
RUN=(--config "$SOURCE_DIR/configs/split_fmnist.ini" --data.tasks=3 --data.train_samples_per_task=600
     --data.test_samples_per_task=300 --train.epochs=2 --train.batch_size=64 --train.momentum=0.9 --model.dropout=0.2
     --train.algorithm=anpyc --anpyc.lambda=1000 --train.penalty_step=proximal --anpyc.first_budget=0.2 --anpyc.retrain_epochs=1 --run.progress=off)

timeout 300 "${MPI[@]}" -np 2 "$TRAIN" "${RUN[@]}" --run.checkpoint_every_steps=7 --run.keep_checkpoints=1000 \
  --output "$WORK/reference" > "$WORK/reference.out" 2>&1 && pass "reference run with a checkpoint every 7 steps" \
  || { fail "reference run"; tail -20 "$WORK/reference.out"; finish; exit 1; }
REFERENCE="$WORK/reference/accuracy_matrix.csv"

# resume_from NAME CHECKPOINT_FILE: a fresh run folder holding only that checkpoint, resumed to the end.
resume_from() {
  local name=$1 file=$2 dir="$WORK/resume-$1"
  mkdir -p "$dir/checkpoints"
  cp "$WORK/reference/config.ini" "$dir/"
  cp "$file" "$dir/checkpoints/"
  basename "$file" > "$dir/checkpoints/latest"
  if timeout 300 "${MPI[@]}" -np 2 "$TRAIN" --resume "$dir" --run.progress=off > "$dir.out" 2>&1 \
     && cmp -s "$REFERENCE" "$dir/accuracy_matrix.csv"; then
    pass "resume $name ($(grep -o 'resumed from a checkpoint: .*' "$dir/train.log"))"
  else
    fail "resume $name: accuracy matrix differs from the uninterrupted run or the run failed"
    tail -5 "$dir.out"; paste -d'|' "$REFERENCE" "$dir/accuracy_matrix.csv"
  fi
}
# Checkpoint files by phase, from the log lines "checkpoint PATH (phase, ...)".
pick() { grep -o "checkpoint [^ ]* ($1[^)]*)" "$WORK/reference/train.log" | sed -n "${2}p" | awk '{print $2}'; }
for spec in "between_tasks 1" "between_tasks 2" "training 2" "training 6" "after_task 1" "after_task 2" "after_task 4"; do
  set -- $spec
  file=$(pick "$1" "$2")
  [ -n "$file" ] && resume_from "$1-$2" "$file" || fail "no $1 checkpoint number $2 in the reference log"
done

# A different number of ranks: a 2-rank checkpoint resumed on 1 rank continues (with a warning about
# dropout's random streams); the rows before the interruption are the reference's.
dir="$WORK/one-rank"
mkdir -p "$dir/checkpoints"
cp "$WORK/reference/config.ini" "$dir/"
cp "$(pick training 4)" "$dir/checkpoints/"
if timeout 300 "$TRAIN" --resume "$dir" --run.progress=off > "$dir.out" 2>&1 \
   && grep -q "the checkpoint was written by 2 ranks, this job has 1" "$dir/train.log" \
   && [ "$(sed -n 1,3p "$dir/accuracy_matrix.csv")" = "$(sed -n 1,3p "$REFERENCE")" ]; then
  pass "2-rank checkpoint resumed on 1 rank: continues, warns, earlier rows unchanged"
else
  fail "resume with another world size"; tail -3 "$dir.out"
fi

# Every algorithm's state survives a resume: a mid-task-2 checkpoint of each, resumed on 1 rank.
for algorithm in ewc si mas lwf sgdf; do
  ALGO=(--config "$SOURCE_DIR/configs/split_fmnist.ini" --data.tasks=3 --data.train_samples_per_task=400
        --data.test_samples_per_task=200 --train.epochs=2 --train.batch_size=64 --train.momentum=0.9
        --train.algorithm=$algorithm --ewc.fisher_samples=100 --run.progress=off)
  timeout 300 "$TRAIN" "${ALGO[@]}" --run.checkpoint_every_steps=5 --run.keep_checkpoints=1000 \
    --output "$WORK/$algorithm-reference" > "$WORK/$algorithm-reference.out" 2>&1
  file=$(grep -o "checkpoint [^ ]* (training, stage 2[^)]*)" "$WORK/$algorithm-reference/train.log" | sed -n 2p | awk '{print $2}')
  dir="$WORK/$algorithm-resumed"
  mkdir -p "$dir/checkpoints"
  cp "$WORK/$algorithm-reference/config.ini" "$dir/"
  [ -n "$file" ] && cp "$file" "$dir/checkpoints/"
  timeout 300 "$TRAIN" --resume "$dir" --run.progress=off > "$dir.out" 2>&1
  if [ -n "$file" ] && cmp -s "$WORK/$algorithm-reference/accuracy_matrix.csv" "$dir/accuracy_matrix.csv" \
     && grep -q "resumed from a checkpoint: stage 2/3, training" "$dir/train.log"; then
    pass "$algorithm: resumed mid-task 2, same accuracy matrix"
  else
    fail "$algorithm resume"; tail -3 "$dir.out"
  fi
done

# A real preemption: SIGUSR1 to mpirun (forwarded to every rank) -> checkpoint, exit 3; --resume finishes the run.
"${MPI[@]}" -np 2 "$TRAIN" "${RUN[@]}" --output "$WORK/preempted" > "$WORK/preempted.out" 2>&1 &
pid=$!
wait_for "$WORK/preempted/train.log" "stage 2/3"
kill -USR1 $pid
wait $pid
code=$?
[ "$code" -eq 3 ] && grep -q "stopped by a signal" "$WORK/preempted.out" && pass "SIGUSR1: checkpoint and exit 3" \
  || { fail "SIGUSR1 gave exit $code"; tail -5 "$WORK/preempted.out"; }
timeout 300 "${MPI[@]}" -np 2 "$TRAIN" --resume "$WORK/preempted" --run.progress=off > "$WORK/preempted-resume.out" 2>&1
cmp -s "$REFERENCE" "$WORK/preempted/accuracy_matrix.csv" && pass "preempted and resumed run equals the uninterrupted run" \
  || { fail "preempted run differs"; tail -5 "$WORK/preempted-resume.out"; }

# A second signal exits at once (128 + SIGUSR1), without waiting for the checkpoint.
"$TRAIN" "${RUN[@]}" --output "$WORK/twice" > "$WORK/twice.out" 2>&1 &
pid=$!
wait_for "$WORK/twice/train.log" "stage 1/3"
kill -USR1 $pid; sleep 0.02; kill -USR1 $pid
wait $pid
code=$?
[ "$code" -eq 138 ] && pass "second signal: exit at once (exit 138)" || fail "second signal gave exit $code, expected 138"

# A rank killed with SIGKILL: the job ends non-zero within a bounded time and names the lost rank.
"${MPI[@]}" -np 2 "$TRAIN" "${RUN[@]}" --output "$WORK/killed" > "$WORK/killed.out" 2>&1 &
pid=$!
wait_for "$WORK/killed/train.log" "stage 1/3"
victim=$(rank_pid "$pid" 1)
start=$(date +%s)
kill -9 "$victim"
timeout 120 tail --pid=$pid -f /dev/null
wait $pid
code=$?
elapsed=$(( $(date +%s) - start ))
if [ "$code" -ne 0 ] && [ "$elapsed" -lt 60 ] && grep -q "rank 1" "$WORK/killed.out"; then
  pass "killed rank: exit $code after ${elapsed}s, $(grep -o 'process rank 1[^.]*' "$WORK/killed.out" | head -1)"
else
  fail "killed rank: exit $code after ${elapsed}s"; tail -15 "$WORK/killed.out"
fi

# A checkpoint from another configuration: refused, naming the file and the first difference.
expect_failure "resume with another configuration" "/config: the checkpoint was written with a different configuration (checkpoint 'anpyc.lambda = 1000' vs now 'anpyc.lambda = 10')" \
  "${MPI[@]}" -np 2 "$TRAIN" --resume "$WORK/resume-between_tasks-1" --anpyc.lambda=10 --run.progress=off

# A checkpoint that cannot be written stops every rank (here the checkpoint folder is a file).
mkdir -p "$WORK/unwritable"
touch "$WORK/unwritable/checkpoints"
expect_failure "checkpoint cannot be written" "$WORK/unwritable/checkpoints" \
  "${MPI[@]}" -np 2 "$TRAIN" "${RUN[@]}" --output "$WORK/unwritable"

# A rank that hangs (stopped with SIGSTOP): the others' collective times out and the job ends.
"${MPI[@]}" -np 2 "$TRAIN" "${RUN[@]}" --run.collective_timeout=5 --output "$WORK/hung" > "$WORK/hung.out" 2>&1 &
pid=$!
wait_for "$WORK/hung/train.log" "stage 1/3"
victim=$(rank_pid "$pid" 1)
start=$(date +%s)
kill -STOP "$victim"
timeout 120 tail --pid=$pid -f /dev/null
wait $pid
code=$?
elapsed=$(( $(date +%s) - start ))
kill -9 "$victim" 2>/dev/null
if [ "$code" -ne 0 ] && [ "$elapsed" -lt 60 ] && grep -q "did not complete within 5 s" "$WORK/hung.out"; then
  pass "hung rank: exit $code after ${elapsed}s: $(grep -o 'rank 0 of 2: MPI [A-Za-z]* did not complete within 5 s' "$WORK/hung.out" | head -1)"
else
  fail "hung rank: exit $code after ${elapsed}s"; tail -10 "$WORK/hung.out"
fi

# A damaged newest checkpoint: --resume says why it skips it and continues from the previous one.
dir="$WORK/damaged"
mkdir -p "$dir/checkpoints"
cp "$WORK/reference/config.ini" "$dir/"
first=$(pick between_tasks 1); second=$(pick between_tasks 2)
cp "$first" "$second" "$dir/checkpoints/"
basename "$second" > "$dir/checkpoints/latest"
head -c 100000 "$second" > "$dir/checkpoints/$(basename "$second")"
timeout 300 "${MPI[@]}" -np 2 "$TRAIN" --resume "$dir" --run.progress=off > "$dir.out" 2>&1
if cmp -s "$REFERENCE" "$dir/accuracy_matrix.csv" && grep -q "skipped an unusable checkpoint: .*$(basename "$second")" "$dir/train.log" \
   && grep -q "resumed from a checkpoint: stage 2/3" "$dir/train.log"; then
  pass "truncated newest checkpoint: skipped with a reason, resumed from the previous one, same result"
else
  fail "damaged checkpoint fallback"; tail -5 "$dir.out"; grep -i "checkpoint" "$dir/train.log" | tail -3
fi
# Every checkpoint damaged: a clear error, nothing started from scratch.
dir="$WORK/all-damaged"
mkdir -p "$dir/checkpoints"
cp "$WORK/reference/config.ini" "$dir/"
head -c 100000 "$first" > "$dir/checkpoints/$(basename "$first")"
printf 'not hdf5' > "$dir/checkpoints/$(basename "$second")"
basename "$second" > "$dir/checkpoints/latest"
expect_failure "all checkpoints damaged" "--resume: no usable checkpoint in $dir/checkpoints" \
  "${MPI[@]}" -np 2 "$TRAIN" --resume "$dir" --run.progress=off

finish
