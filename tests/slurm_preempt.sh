#!/usr/bin/env bash
# Preemption and requeue under a real (one-node, throwaway) Slurm:
#  1. starts munged + slurmctld + slurmd on 127.0.0.1 as root, with every
#     file under $CLX_SLURM_TEST_DIR (default /tmp/clx-slurm-test), see tests/slurm/;
#  2. reference: the run of tests/slurm/preempt.ini uninterrupted with
#     `mpirun -np 2` (outside Slurm on purpose: the claim under test is that a
#     Slurm job stopped and requeued ends exactly like a plain uninterrupted run,
#     and a reference that does not go through the code under test cannot share
#     its mistakes);
#  3. submits cluster/train.sbatch for the same config with 2 tasks on the one
#     node (--gpus-per-node=0: CPU, backend mpi); once the job is in task 2 and
#     has written a checkpoint, `scancel --signal=USR1 JOB` (no --batch, no
#     --full: Slurm delivers it to the tasks of every step, not to the batch
#     shell); the ranks checkpoint and exit 3, the script requeues the job;
#  4. checks the job came back (Restarts=1), finished COMPLETED, resumed from
#     the checkpoint, and that its accuracy_matrix.csv equals the reference
#     byte for byte.
# A requeued job is held by Slurm for ~2 minutes (EligibleTime = requeue
# time + 121 s, fixed in Slurm); the test moves its StartTime to 3 s after the
# node is idle again instead, unless CLX_SLURM_NATURAL_REQUEUE=1.
#
# Needs root and Debian's slurm-wlm and munge (scripts/setup.sh installs them);
# without them it prints why and exits 77 (ctest: skipped). Environment: TRAIN,
# MPIRUN, SOURCE_DIR (set by ctest; defaults: build/train, mpirun, this checkout).
# Daemons left by an earlier, killed run in the same folder are stopped first
# (by their pid files); the ones this run starts are stopped on exit.
SOURCE_DIR=${SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TRAIN=${TRAIN:-$SOURCE_DIR/build/train}
MPIRUN=${MPIRUN:-$(command -v mpirun)}
export SOURCE_DIR TRAIN MPIRUN
source "$SOURCE_DIR/tests/cli_lib.sh"
START=$(date +%s)

skip() { echo "SKIP - $1"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (slurmd runs the jobs as root here)"
for tool in munged slurmctld slurmd sbatch srun scontrol scancel sinfo flock; do
  command -v "$tool" >/dev/null || skip "$tool not installed (apt-get install slurm-wlm munge)"
done
[ -x "$TRAIN" ] || { fail "TRAIN=$TRAIN is not an executable"; finish; exit 1; }

SLURM_DIR=${CLX_SLURM_TEST_DIR:-${TMPDIR:-/tmp}/clx-slurm-test}
CONFIG=$SOURCE_DIR/tests/slurm/preempt.ini
RUN=$WORK/run
JOB=""

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  bash "$SOURCE_DIR/tests/slurm/stop.sh" "$SLURM_DIR" >/dev/null 2>&1
  rm -rf "$WORK"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# show_logs: what to look at when something failed.
show_logs() {
  local file
  for file in "$WORK"/slurm-*.log "$RUN/train.log" "$SLURM_DIR/log/slurmctld.log" "$SLURM_DIR/log/slurmd.log"; do
    [ -f "$file" ] || continue
    echo "    --- last lines of $file"
    grep -v 'progress\|%|' "$file" | tail -15 | sed 's/^/    /'
  done
  [ -n "$JOB" ] && scontrol show job "$JOB" 2>/dev/null | sed 's/^/    /'
}
give_up() { fail "$1"; show_logs; finish; exit 1; }
# job_field NAME: a field of `scontrol show job` for the test job.
job_field() { scontrol show job -o "$JOB" 2>/dev/null | grep -o "\b$1=[^ ]*" | head -1 | cut -d= -f2; }
# wait_for SECONDS CONDITION...: polls the condition every 0.2 s, at most SECONDS.
wait_for() {
  local deadline=$(( $(date +%s) + $1 ))
  shift
  while [ "$(date +%s)" -lt "$deadline" ]; do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}

# One run at a time per state folder (ports and folder are shared). The
# daemons do not inherit the lock (start.sh closes fd 9 for them).
exec 9>"$SLURM_DIR.lock"
flock -w 120 9 || give_up "another slurm_preempt run holds $SLURM_DIR.lock"

# --- 1. a throwaway Slurm ---
if bash "$SOURCE_DIR/tests/slurm/start.sh" "$SLURM_DIR" > "$WORK/start.out" 2>&1; then
  pass "$(tail -1 "$WORK/start.out" | sed 's/^slurm-start: //')"
else
  cat "$WORK/start.out"; give_up "the one-node Slurm did not start"
fi
source "$SLURM_DIR/env.sh"
SRUN_MPI=$(grep -o '^MpiDefault=.*' "$SLURM_CONF" | cut -d= -f2)
[ "$SRUN_MPI" = pmix ] || echo "note: Slurm has no pmix plugin here; trying srun --mpi=$SRUN_MPI"
if out=$(timeout 60 srun --mpi="$SRUN_MPI" -n 2 --time=1 bash -c 'echo "$SLURM_PROCID"' 2>&1) \
   && [ "$(sort <<<"$out" | tr '\n' ' ')" = "0 1 " ]; then
  pass "srun --mpi=$SRUN_MPI -n 2 starts 2 tasks"
else
  echo "$out" | sed 's/^/    /'; give_up "srun -n 2 did not start 2 tasks"
fi

# --- 2. the reference, uninterrupted ---
if timeout 300 "${MPI[@]}" -np 2 "$TRAIN" --config "$CONFIG" --output "$WORK/reference" > "$WORK/reference.out" 2>&1; then
  pass "reference run (mpirun -np 2, uninterrupted): $(grep -o 'time: [0-9.]* s in all' "$WORK/reference.out")"
else
  tail -20 "$WORK/reference.out"; give_up "reference run failed"
fi

# --- 3. the batch job, stopped mid-run with SIGUSR1 ---
JOB=$(sbatch --parsable --nodes=1 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1 --time=15 \
        --job-name=clx-preempt-test --output="$WORK/slurm-%j.log" --chdir="$SOURCE_DIR" \
        --export="ALL,TRAIN=$TRAIN,SRUN_MPI=$SRUN_MPI,CLX_SLURM_DIR=$SLURM_DIR" \
        "$SOURCE_DIR/cluster/train.sbatch" "$RUN" "$CONFIG" 2> "$WORK/sbatch.err")
JOB=${JOB%%;*}
[[ $JOB =~ ^[0-9]+$ ]] || { cat "$WORK/sbatch.err"; JOB=""; give_up "sbatch cluster/train.sbatch failed"; }
LOG=$WORK/slurm-$JOB.log
pass "submitted cluster/train.sbatch as job $JOB (2 tasks, 1 node)"

in_task_2() { grep -q 'checkpoint .* (training, stage 2,' "$RUN/train.log" 2>/dev/null && [ -s "$RUN/checkpoints/latest" ]; }
wait_for 240 in_task_2 || give_up "job $JOB did not reach a checkpoint in task 2 within 240 s"
[ ! -f "$RUN/results.json" ] || give_up "the run had already finished before the signal; make tests/slurm/preempt.ini longer"
checkpoints_before=$(grep -c 'checkpoint .* (' "$RUN/train.log")
scancel --signal=USR1 "$JOB" || give_up "scancel --signal=USR1 $JOB failed"
pass "job $JOB in task 2 with $checkpoints_before checkpoint(s) written: scancel --signal=USR1 $JOB"

requeued() { [ "$(job_field Restarts)" = 1 ] && grep -q 'requeued' "$LOG" 2>/dev/null; }
wait_for 120 requeued || give_up "job $JOB was not requeued within 120 s of SIGUSR1"
grep -q 'stopped by a signal' "$LOG" && pass "ranks got SIGUSR1: $(grep -o 'stopped by a signal[^;]*' "$LOG" | head -1)" \
  || fail "the job log lacks train's 'stopped by a signal' line"
pass "job $JOB requeued: $(job_field JobState) (reason $(job_field Reason)), Restarts=$(job_field Restarts)"

if [ "${CLX_SLURM_NATURAL_REQUEUE:-0}" != 1 ]; then
  # Not at once: slurmd revokes the credentials of the stopped instance with a
  # one-second timestamp and refuses a relaunch in that same second ("Job N
  # already killed, do not launch batch job": the job FAILS). Wait until the
  # node is idle again, then let the job start 3 s later.
  node_idle() { [ "$(sinfo -h -n localhost -o %T 2>/dev/null)" = idle ] && [ "$(job_field JobState)" = PENDING ]; }
  wait_for 60 node_idle || give_up "the node did not become idle within 60 s of the requeue"
  scontrol update JobId="$JOB" StartTime=now+3 || fail "scontrol update JobId=$JOB StartTime=now+3 failed"
fi
finished() { [[ $(job_field JobState) =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)$ ]]; }
wait_for 420 finished || give_up "job $JOB did not finish within 420 s of the requeue"
state=$(job_field JobState) restarts=$(job_field Restarts) exit_code=$(job_field ExitCode)
[ "$state" = COMPLETED ] && [ "$restarts" = 1 ] && [ "$exit_code" = 0:0 ] \
  && pass "job $JOB finished: JobState=$state Restarts=$restarts ExitCode=$exit_code" \
  || give_up "job $JOB ended with JobState=$state Restarts=$restarts ExitCode=$exit_code"

# --- 4. the same result as the uninterrupted run ---
starts=$(grep -c 'train.sbatch .*start [0-9]* on' "$LOG")
[ "$starts" -eq 2 ] && pass "one log for both starts (--open-mode=append): $starts 'start' lines" \
  || fail "the job log has $starts start lines, expected 2"
grep -q -- '--resume: no checkpoint .* yet; starting from the beginning' "$RUN/train.log" \
  && pass "first start: --resume on an empty run folder started from the beginning" \
  || fail "train.log lacks the first start's '--resume: no checkpoint ... yet' line"
resumed=$(grep -o 'resumed from a checkpoint: .*' "$RUN/train.log")
last_checkpoint=$(sed -n '/resumed from a checkpoint/q;p' "$RUN/train.log" | grep -o 'checkpoint [^ ]* (.*)' | tail -1)
if [ "$(grep -c 'resumed from a checkpoint' "$RUN/train.log")" -eq 1 ] && [ -n "$last_checkpoint" ]; then
  pass "train.log: stop at '$last_checkpoint', then '$resumed'"
else
  fail "train.log should show one 'resumed from a checkpoint' after a checkpoint line"
fi
if cmp -s "$WORK/reference/accuracy_matrix.csv" "$RUN/accuracy_matrix.csv"; then
  pass "accuracy_matrix.csv of the preempted and requeued job equals the uninterrupted run's byte for byte"
else
  fail "accuracy_matrix.csv differs from the uninterrupted run"
  paste -d'|' "$WORK/reference/accuracy_matrix.csv" "$RUN/accuracy_matrix.csv" 2>&1 | sed 's/^/    /'
fi
[ "$FAILED" -eq 0 ] || show_logs

echo "slurm_preempt: $(( $(date +%s) - START )) s"
finish
