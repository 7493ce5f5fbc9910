# The sweep as a new user meets it: 3 methods x 2 seeds on 2 ranks with a
# 2-value validation grid, stopped with SIGTERM in the middle of a run and
# rerun: finished runs are skipped, the stopped run resumes from its checkpoint
# and ends with the accuracy matrix of an uninterrupted run; then the report
# (Markdown, CSV, PNG plots). Tiny data keeps each run to a few seconds.
source "$(dirname "$0")/cli_lib.sh"
# wait_for FILE PATTERN SECONDS: until PATTERN appears in FILE.
wait_for() { for _ in $(seq 1 $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
is_png() { [ "$(head -c 8 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }

cat > "$WORK/sweep.ini" <<EOF
# a tiny split Fashion-MNIST sweep
[sweep]
train_config = $SOURCE_DIR/configs/split_fmnist.ini
methods = finetune, ewc, anpyc
seeds = 1, 2
ranks = 2
threads = 1
options = data.tasks=3 data.train_samples_per_task=600 data.test_samples_per_task=300 train.epochs=2 train.batch_size=32 ewc.fisher_samples=100 anpyc.retrain_epochs=1 run.progress=off
[grid]
ewc = ewc.lambda: 1, 10000
EOF
OUT="$WORK/out"
SWEEP_CMD=("$SWEEP" "$WORK/sweep.ini" --output "$OUT")

"${SWEEP_CMD[@]}" --dry-run > "$WORK/plan.txt" 2>&1
[ "$(grep -c '^\[[0-9]*/10\] .*: to train' "$WORK/plan.txt")" -eq 10 ] \
  && grep -q "^\[1/10\] grid ewc ewc.lambda=1: to train, $OUT/grid/ewc/ewc.lambda=1$" "$WORK/plan.txt" \
  && grep -q "^\[10/10\] anpyc seed 2: to train, $OUT/runs/anpyc/seed2$" "$WORK/plan.txt" \
  && pass "dry run: 2 grid runs, then per seed joint, finetune, ewc, anpyc" || { fail "dry run plan"; cat "$WORK/plan.txt"; }

# 1. Stopped by SIGTERM while anpyc seed 1 (run 6 of 10) trains its second task.
"${SWEEP_CMD[@]}" > "$WORK/first.out" 2>&1 &
pid=$!
STOPPED="$OUT/runs/anpyc/seed1"
if wait_for "$STOPPED/train.log" "== stage 2/3" 120; then
  kill -TERM $pid
else
  fail "anpyc seed 1 never reached task 2"; cat "$WORK/first.out"; kill -TERM $pid
fi
wait $pid
code=$?
[ "$code" -eq 3 ] && grep -q "sweep: stopped by SIGTERM during anpyc seed 1" "$WORK/first.out" \
  && grep -q "To continue, rerun the same command" "$WORK/first.out" \
  && pass "SIGTERM: the running train checkpoints, the sweep exits 3 and says how to continue" \
  || { fail "SIGTERM gave exit $code"; cat "$WORK/first.out"; }
[ ! -e "$STOPPED/results.json" ] && [ -s "$STOPPED/checkpoints/latest" ] && grep -q "stopped by a signal" "$STOPPED/console.log" \
  && pass "the stopped run has a checkpoint and no results" || { fail "stopped run state"; tail -5 "$STOPPED/console.log"; }
finished_before=$(ls "$OUT"/grid/*/*/results.json "$OUT"/runs/*/*/results.json 2>/dev/null | wc -l)
[ "$finished_before" -eq 5 ] && pass "5 runs finished before the stop" || fail "$finished_before runs finished before the stop, expected 5"
stat -c '%n %Y' "$OUT"/grid/*/*/results.json "$OUT"/runs/*/*/results.json > "$WORK/finished-before.txt"
"${SWEEP_CMD[@]}" --dry-run | grep -q "^\[6/10\] anpyc seed 1: interrupted: to resume" \
  && pass "dry run shows the stopped run as to resume" || fail "dry run after the stop"

# 2. The same command again: skips, resumes, finishes, reports.
"${SWEEP_CMD[@]}" > "$WORK/second.out" 2>&1
code=$?
[ "$code" -eq 0 ] && pass "rerun: exit 0" || { fail "rerun exit $code"; cat "$WORK/second.out"; }
[ "$(grep -c ': finished earlier, skipped' "$WORK/second.out")" -eq 5 ] && pass "rerun: the 5 finished runs are skipped" \
  || { fail "skipped runs"; cat "$WORK/second.out"; }
stat -c '%n %Y' $(awk '{print $1}' "$WORK/finished-before.txt") | cmp -s - "$WORK/finished-before.txt" \
  && ! grep -q "resumed from a checkpoint" "$OUT"/runs/finetune/seed1/train.log \
  && pass "rerun: finished runs were not retrained (results.json untouched)" || fail "finished runs were rewritten"
grep -q "^\[6/10\] anpyc seed 1 \.\.\. resuming from ckpt-[0-9]*\.h5 done in .*, ACC [0-9.]*%" "$WORK/second.out" \
  && grep -q "resumed from a checkpoint: stage [23]/3" "$STOPPED/train.log" \
  && pass "rerun: the stopped run resumed ($(grep -o 'resumed from a checkpoint: [^|]*' "$STOPPED/train.log"))" \
  || { fail "stopped run not resumed"; grep "anpyc seed 1" "$WORK/second.out"; }
grep -q "^\[10/10\] anpyc seed 2 \.\.\. done in .*, ACC [0-9.]*%, sweep done" "$WORK/second.out" \
  && grep -q "^\[9/10\] ewc seed 2 \.\.\. done in .*, sweep ~.* left" "$WORK/second.out" \
  && pass "progress lines: duration, ACC and time left" || { fail "progress lines"; cat "$WORK/second.out"; }

# The resumed run equals the same run done without interruption.
timeout 300 "${MPI[@]}" -np 2 "$TRAIN" --config "$STOPPED/config.ini" --run.threads=1 --output "$WORK/uninterrupted" \
  > "$WORK/uninterrupted.out" 2>&1
cmp -s "$WORK/uninterrupted/accuracy_matrix.csv" "$STOPPED/accuracy_matrix.csv" \
  && pass "the stopped and resumed run has the accuracy matrix of an uninterrupted run" \
  || { fail "resumed accuracy matrix differs"; paste -d'|' "$WORK/uninterrupted/accuracy_matrix.csv" "$STOPPED/accuracy_matrix.csv"; }

# The grid is scored on validation data; the chosen value is used for the test runs.
chosen=$(awk -F, '$1 == "ewc" { print $2 }' "$OUT/chosen.csv")
acc1=$(awk -F, '$1 == "acc" { print $2 }' "$OUT/grid/ewc/ewc.lambda=1/metrics.csv")
acc2=$(awk -F, '$1 == "acc" { print $2 }' "$OUT/grid/ewc/ewc.lambda=10000/metrics.csv")
expected=$(awk -v a="$acc1" -v b="$acc2" 'BEGIN { print (b > a ? "ewc.lambda=10000" : "ewc.lambda=1") }')
[ "$chosen" = "$expected" ] && grep -q "^eval.split = validation" "$OUT/grid/ewc/ewc.lambda=1/config.ini" \
  && grep -q "^ewc.lambda = ${chosen#ewc.lambda=}$" "$OUT/runs/ewc/seed2/config.ini" \
  && grep -q "^eval.split = test" "$OUT/runs/ewc/seed2/config.ini" \
  && pass "grid: $chosen chosen on validation ACC ($acc1 vs $acc2), used by the test runs" \
  || fail "grid choice: chosen '$chosen', validation ACC $acc1 vs $acc2"

# 3. The report: table per method with mean ± std over the 2 seeds, CSV, plots.
for method in finetune ewc anpyc; do
  grep -q "^| $method | 2 | -\?[0-9.]* ± [0-9.]* | -\?[0-9.]* ± [0-9.]* | -\?[0-9.]* ± [0-9.]* | [0-9.]* ± [0-9.]* | [0-9.]* ± [0-9.]* |$" \
    "$OUT/report.md" && grep -q "^$method,2,-\?[0-9]" "$OUT/report.csv" \
    && pass "report: $method row with mean ± std of FWT, BWT, ACC, SMT over 2 seeds" || fail "report row $method"
done
grep -q "^| joint | 2 | n/a | n/a | n/a | [0-9.]* ± [0-9.]* | n/a |$" "$OUT/report.md" && pass "report: joint row (ACC only)" \
  || fail "report joint row"
grep -q "^| ewc | ewc.lambda=" "$OUT/report.md" && grep -q "chosen on validation data only" "$OUT/report.md" \
  && pass "report: the chosen hyperparameters and their validation ACC" || fail "report: chosen hyperparameters"
grep -q "^| anpyc | omega" "$OUT/report.md" && grep -q "^| ewc | fisher1..fisher3 summed" "$OUT/report.md" \
  && pass "report: which importance tensor was read per method" || fail "report: importance table"
for png in acc_after_each_task bwt_after_each_task finetune_accuracy_matrix ewc_accuracy_matrix anpyc_accuracy_matrix \
           joint_accuracy_matrix importance_distribution; do
  is_png "$OUT/plots/$png.png" && grep -q "](plots/$png.png)" "$OUT/report.md" \
    && pass "plot $png.png is a PNG, linked from report.md" || fail "plot $png.png"
done

# 3b. A subset run into the same folder (`--methods`, as the ablations of docs/results.md):
# a new method with its own grid. The other methods' choices stay in chosen.csv, and the
# report still covers every method's finished runs.
{ cat "$WORK/sweep.ini"; printf '[methods]\nanpyc-s = train.algorithm=anpyc anpyc.sign=-1\n'; } > "$WORK/subset.ini"
sed -i 's/^ewc = ewc.lambda: 1, 10000$/ewc = ewc.lambda: 1, 10000\nanpyc-s = anpyc.lambda: 1/' "$WORK/subset.ini"
# A row as a method with a two-axis grid leaves it (its choice holds a comma): kept whole.
echo "si-two-axes,si.c=0.1,si.xi=0.01,0.875" >> "$OUT/chosen.csv"
if "$SWEEP" "$WORK/subset.ini" --output "$OUT" --methods anpyc-s > "$WORK/subset.out" 2>&1 \
   && [ "$(awk -F, '$1 == "ewc" { print $2 }' "$OUT/chosen.csv")" = "$chosen" ] \
   && grep -qx "si-two-axes,si.c=0.1,si.xi=0.01,0.875" "$OUT/chosen.csv" \
   && grep -q "^| si-two-axes | si.c=0.1,si.xi=0.01 | 0.875 (chosen.csv)" "$OUT/report.md" \
   && grep -q "^anpyc-s,anpyc.lambda=1," "$OUT/chosen.csv" \
   && grep -q "^| ewc | $chosen | .* (chosen.csv) | chosen in an earlier invocation" "$OUT/report.md" \
   && grep -q "report over 10 runs (6 of them from earlier invocations)" "$WORK/subset.out"; then
  for method in finetune ewc anpyc anpyc-s; do grep -q "^| $method | 2 | " "$OUT/report.md" || fail "subset report lacks $method"; done
  pass "a subset sweep (--methods anpyc-s) keeps ewc's and a two-axis choice in chosen.csv and reports every method's runs"
else fail "subset sweep into the same folder"; cat "$WORK/subset.out" "$OUT/chosen.csv"; fi

# 4. A run that fails is listed with its log; the sweep goes on and exits 1.
cat > "$WORK/failing.ini" <<EOF
[sweep]
train_config = $SOURCE_DIR/configs/split_fmnist.ini
methods = broken, finetune
joint = false
options = data.tasks=2 data.train_samples_per_task=200 data.test_samples_per_task=100 run.progress=off
[methods]
broken = train.algorithm=finetune train.lr=-1
EOF
"$SWEEP" "$WORK/failing.ini" --output "$WORK/failing" --no-report > "$WORK/failing.out" 2>&1
code=$?
[ "$code" -eq 1 ] && grep -q "^\[1/2\] broken seed 1 \.\.\. FAILED .*train.lr: must be a positive number; log $WORK/failing/runs/broken/seed1/console.log" "$WORK/failing.out" \
  && grep -q "^\[2/2\] finetune seed 1 \.\.\. done" "$WORK/failing.out" \
  && grep -q "^  broken seed 1 ($WORK/failing/runs/broken/seed1): failed: exit [12]: " "$WORK/failing.out" \
  && pass "a failed run is listed with its log, the others run, exit 1" || { fail "failing run (exit $code)"; cat "$WORK/failing.out"; }
"$SWEEP" "$WORK/failing.ini" --output "$WORK/failing" --no-report > "$WORK/failing2.out" 2>&1
[ $? -eq 1 ] && grep -q "broken seed 1: failed earlier (exit [12]: .*), not retried" "$WORK/failing2.out" \
  && pass "rerun: a failed run is not retried without --retry-failed" || { fail "failed run on rerun"; cat "$WORK/failing2.out"; }
# Another process holds the output folder's lock, as a running sweep would: an fcntl lock (as train's
# run-folder lock), with the holder's name in the lock file.
mkdir -p "$WORK/locked"
/usr/bin/python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a+")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
f.truncate(0); f.write("sweep on host elsewhere, pid 4242\n"); f.flush()
print("locked", flush=True)
time.sleep(120)' "$WORK/locked/.sweep.lock" > "$WORK/holder.out" &
holder=$!
for _ in $(seq 1 100); do grep -q locked "$WORK/holder.out" && break; sleep 0.1; done
expect_failure "a second sweep on the same output folder is refused" \
  "$WORK/locked: another sweep is running on this output folder: sweep on host elsewhere, pid 4242" \
  "$SWEEP" "$WORK/failing.ini" --output "$WORK/locked"
kill $holder; wait $holder 2>/dev/null
expect_failure "ranks > 1 without an MPI launcher" "--mpirun: /nonexistent/mpirun not found" \
  "$SWEEP" "$WORK/failing.ini" --ranks 2 --mpirun /nonexistent/mpirun
sed -i 's/^options = data.tasks=2/options = data.tasks=3/' "$WORK/failing.ini"
expect_failure "changed settings are refused for an existing run" \
  "$WORK/failing/runs/broken/seed1 was started with other settings ('--data.tasks=2' then, '--data.tasks=3' now)" \
  "$SWEEP" "$WORK/failing.ini" --output "$WORK/failing" --no-report
expect_failure "bad sweep file" "$WORK/failing.ini:5: unknown key sweep.option" \
  bash -c "sed -i 's/^options =/option =/' '$WORK/failing.ini' && '$SWEEP' '$WORK/failing.ini'"

finish
