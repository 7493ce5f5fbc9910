# The run folder is never lost or corrupted: one run at a time holds it, a
# full disk is an error naming the file, a refused start changes nothing,
# damaged or odd checkpoint folders fall back with a logged reason, and a stop
# before training ends with the requeue code.
source "$(dirname "$0")/cli_lib.sh"
# wait_for FILE PATTERN: up to 20 s for PATTERN to appear in FILE.
wait_for() { for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# wait_for_handler PID: up to 20 s until process PID catches SIGUSR1 (bit 10 of SigCgt in /proc).
wait_for_handler() {
  local mask
  for _ in $(seq 1 2000); do
    mask=$(awk '/^SigCgt:/ {print $2}' "/proc/$1/status" 2>/dev/null)
    [ -n "$mask" ] && (( (16#$mask >> 9) & 1 )) && return 0
    sleep 0.01
  done
  return 1
}
# mount_tmpfs DIR SIZE: a small file system to fill up (root only); non-zero when it cannot be mounted.
MOUNTS=()
mount_tmpfs() { mkdir -p "$1" && mount -t tmpfs -o "size=$2" tmpfs "$1" 2>/dev/null && MOUNTS+=("$1"); }
trap 'for m in "${MOUNTS[@]}"; do umount -l "$m"; done; rm -rf "$WORK"' EXIT
# snapshot DIR: every file's checksum (but the lock file, which names its latest holder).
snapshot() { (cd "$1" && find . -type f ! -name .lock -print0 | sort -z | xargs -0 md5sum); }
# A python3 with h5py and xxhash (Debian's, not a pyenv shim), for checkpoints damaged on purpose.
PYTHON=""
for candidate in /usr/bin/python3 python3; do
  "$candidate" -c 'import h5py, numpy, xxhash' 2>/dev/null && { PYTHON=$candidate; break; }
done

# Options of every run here: BASE, plus how many tasks and training samples.
BASE=(--data.test_samples_per_task=128 --run.progress=off)
TINY=("${BASE[@]}" --data.tasks=3 --data.train_samples_per_task=256)

# --- one run per folder: a second run (or resume) into a folder in use stops at once, naming the holder.
# The holder trains about 20 s from its first stage, so that it still runs when the three tries below
# (about 1-2 s each, more on a loaded machine) reach the lock.
"$TRAIN" "${BASE[@]}" --data.tasks=3 --data.train_samples_per_task=2048 --train.epochs=20 --output "$WORK/busy" \
  > "$WORK/busy.out" 2>&1 &
holder=$!
wait_for "$WORK/busy/train.log" "stage 1/3"
expect_failure "second run into a folder in use" \
  "--output $WORK/busy: the run folder is in use by train (1 rank(s)) on host $(hostname), pid $holder, started " \
  "$TRAIN" "${TINY[@]}" --output "$WORK/busy"
expect_failure "2 ranks: second run into a folder in use" "the run folder is in use by train (1 rank(s)) on host $(hostname), pid $holder" \
  "${MPI[@]}" -np 2 "$TRAIN" "${TINY[@]}" --output "$WORK/busy"
expect_failure "resume of a folder in use" "--resume $WORK/busy: the run folder is in use by train (1 rank(s))" \
  "$TRAIN" --resume "$WORK/busy" --run.progress=off
wait $holder
code=$?
[ "$code" -eq 0 ] && [ -s "$WORK/busy/results.json" ] && ! grep -q "in use" "$WORK/busy/train.log" \
  && pass "the holder finished undisturbed (exit 0, results written)" || fail "the holder: exit $code"

# --- a refused --resume (another algorithm) changes nothing; the documented resume still works
timeout 120 "$TRAIN" "${TINY[@]}" --output "$WORK/done" > "$WORK/done.out" 2>&1 || fail "reference run"
cp "$WORK/done/accuracy_matrix.csv" "$WORK/reference.csv"
REFERENCE="$WORK/reference.csv"
before=$(snapshot "$WORK/done")
expect_failure "resume with another algorithm" \
  "/config: the checkpoint was written with a different configuration (checkpoint 'train.algorithm = finetune' vs now 'train.algorithm = ewc')" \
  "$TRAIN" --resume "$WORK/done" --train.algorithm=ewc --run.progress=off
[ "$(snapshot "$WORK/done")" = "$before" ] && pass "refused resume: every file of the run folder unchanged" \
  || { fail "refused resume changed the run folder"; diff <(echo "$before") <(snapshot "$WORK/done") | head -5; }
timeout 120 "$TRAIN" --resume "$WORK/done" --run.progress=off > "$WORK/done-resume.out" 2>&1 \
  && cmp -s "$REFERENCE" "$WORK/done/accuracy_matrix.csv" \
  && pass "train --resume DIR still works after the refusal" || { fail "resume after a refusal"; tail -3 "$WORK/done-resume.out"; }

# report's outputs are checked the same way (a device is written through, never replaced).
expect_failure "report --csv on a full device" "report: error: cannot write /dev/full: No space left on device" \
  "$REPORT" "$WORK/done" --csv /dev/full
[ -c /dev/full ] && pass "/dev/full is still the device" || fail "/dev/full was replaced"

# --- checkpoint folders damaged or odd: the resume falls back and says which file it skipped and why
# copy_run NAME: a run folder with config.ini and the first two checkpoints of the reference run.
copy_run() {
  rm -rf "$WORK/$1"; mkdir -p "$WORK/$1/checkpoints"
  cp "$WORK/done/config.ini" "$WORK/$1/"
  cp "$WORK/done/checkpoints/ckpt-00000001.h5" "$WORK/done/checkpoints/ckpt-00000002.h5" "$WORK/$1/checkpoints/"
  echo ckpt-00000002.h5 > "$WORK/$1/checkpoints/latest"
}
# expect_fallback NAME REASON: --resume skips ckpt-00000002.h5 for REASON, resumes from ckpt 1, same result.
expect_fallback() {
  local dir="$WORK/$1"
  if timeout 120 "$TRAIN" --resume "$dir" --run.progress=off > "$dir.out" 2>&1 \
     && grep -qF "skipped an unusable checkpoint: checkpoint $dir/checkpoints/ckpt-00000002.h5: $2" "$dir/train.log" \
     && grep -q "resumed from a checkpoint: stage 2/3" "$dir/train.log" && cmp -s "$REFERENCE" "$dir/accuracy_matrix.csv"; then
    pass "$1: skipped with '$2', resumed from the previous checkpoint, same result"
  else
    fail "$1: no fallback"; tail -3 "$dir.out"; grep -i "checkpoint" "$dir/train.log" | tail -3
  fi
}
# damage FILE MODE: rewrites a model tensor of FILE with valid fingerprints (what a reader cannot catch).
damage() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import struct, sys
import h5py, numpy as np, xxhash
TORCH = {"float32": b"Float", "float64": b"Double"}
def fingerprint(array, dtype):
    h = xxhash.xxh64()
    h.update(struct.pack("<q", len(TORCH[dtype])) + TORCH[dtype] + struct.pack("<q", array.ndim))
    h.update(b"".join(struct.pack("<q", d) for d in array.shape))
    h.update(np.ascontiguousarray(array))
    return h.hexdigest()
def put(group, link, array, dtype):
    if link in group: del group[link]
    ds = group.create_dataset(link, data=array)
    ds.attrs.create("dtype", np.bytes_(dtype))
    ds.attrs.create("fingerprint", np.bytes_(fingerprint(array, dtype)))
with h5py.File(sys.argv[1], "r+") as f:
    model, mode = f["model"], sys.argv[2]
    weight = model["trunk.1.weight"][()]
    if mode == "dtype": put(model, "trunk.1.weight", weight.astype(np.float64), "float64")
    if mode == "shape": put(model, "trunk.1.weight", weight.reshape(weight.shape[1], weight.shape[0]).copy(), "float32")
    if mode == "extra":
        put(model, "trunk.9.weight", np.zeros((2, 2), np.float32), "float32")
        names = [n for n in model.attrs["names"]] + [b"trunk.9.weight"]
        model.attrs.create("names", np.array(names, dtype="S%d" % max(len(n) for n in names)))
EOF
}
if [ -z "$PYTHON" ]; then
  echo "skip - damaged model tensors: needs python3 with h5py, numpy and xxhash (scripts/setup.sh installs them)"
else
  copy_run wrong-dtype; damage "$WORK/wrong-dtype/checkpoints/ckpt-00000002.h5" dtype
  expect_fallback wrong-dtype "/model/trunk.1.weight: dtype float64, expected float32"
  copy_run wrong-shape; damage "$WORK/wrong-shape/checkpoints/ckpt-00000002.h5" shape
  expect_fallback wrong-shape "/model/trunk.1.weight: shape [784, 512], expected [512, 784]"
  copy_run unexpected-tensor; damage "$WORK/unexpected-tensor/checkpoints/ckpt-00000002.h5" extra
  expect_fallback unexpected-tensor "/model/trunk.9.weight: not expected (no such tensor here)"
fi

# A directory with a checkpoint's name: skipped with its reason, numbered past, never blocking the next write.
copy_run odd-names
mkdir "$WORK/odd-names/checkpoints/ckpt-00000003.h5"
dead=$(bash -c 'echo $$')  # a process that has ended
echo x > "$WORK/odd-names/checkpoints/ckpt-00000003.h5.tmp-$dead"
echo x > "$WORK/odd-names/results.json.tmp-$dead"
echo x > "$WORK/odd-names/checkpoints/ckpt-00000009.h5.tmp-$$"  # this shell's: a live writer's, kept
dir="$WORK/odd-names"
if timeout 120 "$TRAIN" --resume "$dir" --run.progress=off > "$dir.out" 2>&1 \
   && grep -qF "skipped an unusable checkpoint: checkpoint $dir/checkpoints/ckpt-00000003.h5: /: not a regular file (a directory)" "$dir/train.log" \
   && grep -q "resumed from a checkpoint: stage 3/3" "$dir/train.log" && [ -f "$dir/checkpoints/ckpt-00000004.h5" ] \
   && cmp -s "$REFERENCE" "$dir/accuracy_matrix.csv"; then
  pass "a directory named ckpt-00000003.h5: skipped with its reason, the next checkpoint is ckpt-00000004.h5"
else
  fail "directory with a checkpoint's name"; tail -3 "$dir.out"
fi
if [ ! -e "$dir/checkpoints/ckpt-00000003.h5.tmp-$dead" ] && [ ! -e "$dir/results.json.tmp-$dead" ] \
   && [ -e "$dir/checkpoints/ckpt-00000009.h5.tmp-$$" ] \
   && grep -q "removed a stale temporary file in $dir/checkpoints: ckpt-00000003.h5.tmp-$dead (its writer, process $dead, has ended)" "$dir/train.log"; then
  pass "temporary files of ended writers removed at start (and logged), a live writer's kept"
else
  fail "stale temporary files"; ls -a "$dir" "$dir/checkpoints"
fi

# --- a stop before training: exit 3 (the requeue code), nothing written, the same command starts again.
# SIGUSR1 to each rank the moment it exists (while LibTorch loads: the train launcher keeps the signal
# pending until the handlers are installed); SIGTERM once the handler is installed (MPI start-up, data).
for signal in USR1 TERM; do
  "${MPI[@]}" -np 2 "$TRAIN" "${BASE[@]}" --output "$WORK/early-$signal" \
    > "$WORK/early-$signal.out" 2>&1 &
  launcher=$!
  ranks=""
  for _ in $(seq 1 1000); do ranks=$(pgrep -P $launcher -f "$TRAIN" | tr '\n' ' '); [ "$(echo $ranks | wc -w)" -eq 2 ] && break; sleep 0.005; done
  for rank in $ranks; do
    [ $signal = TERM ] && wait_for_handler "$rank"
    kill -$signal "$rank"
  done
  wait $launcher
  code=$?
  if [ "$code" -eq 3 ] && grep -q "before training started; nothing was written" "$WORK/early-$signal.out" \
     && [ ! -e "$WORK/early-$signal/config.ini" ] && [ ! -e "$WORK/early-$signal/checkpoints" ]; then
    pass "SIG$signal before training: exit 3, nothing written ($(grep -o 'stopped by a signal [a-z ]*' "$WORK/early-$signal.out" | head -1))"
  else
    fail "SIG$signal before training: exit $code"; tail -5 "$WORK/early-$signal.out"
  fi
done

# --- a full disk: every write is checked, the error names the file and the reason, exit 1, no crash
if ! mount_tmpfs "$WORK/disk1" 2m || ! mount_tmpfs "$WORK/disk2" 4m; then
  echo "skip - full disk: cannot mount a tmpfs (needs root)"
else
  # Results: the disk fills up during the last task (the process is held while it is filled), leaving
  # one 4 KiB page: room for results.json, none for the CSVs (which used to come out empty, with exit 0).
  "$TRAIN" "${BASE[@]}" --data.tasks=2 --data.train_samples_per_task=2048 --train.epochs=2 --run.checkpoints=false \
    --output "$WORK/disk1/run" > "$WORK/disk1.out" 2>&1 &
  pid=$!
  wait_for "$WORK/disk1/run/train.log" "stage 2/2"
  kill -STOP $pid
  head -c 4096 /dev/zero > "$WORK/disk1/page"; cat /dev/zero > "$WORK/disk1/filler" 2>/dev/null; rm "$WORK/disk1/page"
  kill -CONT $pid
  wait $pid
  code=$?
  if [ "$code" -eq 1 ] && grep -q "train: error: cannot write $WORK/disk1/run/[a-z_.]*: No space left on device" "$WORK/disk1.out" \
     && [ -z "$(find "$WORK/disk1/run" -type f -empty)" ] && ! grep -q "results written" "$WORK/disk1.out"; then
    pass "full disk at the end: exit 1, no empty file, $(grep -o 'cannot write .*' "$WORK/disk1.out" | head -1)"
  else
    fail "full disk at the end: exit $code"; tail -3 "$WORK/disk1.out"; ls -la "$WORK/disk1/run"
  fi
  # A checkpoint: the second one does not fit; the first stays, nothing half-written, exit 1 (not a crash).
  "$TRAIN" "${TINY[@]}" --output "$WORK/disk2/run" > "$WORK/disk2.out" 2>&1
  code=$?
  if [ "$code" -eq 1 ] && grep -q "cannot write $WORK/disk2/run/checkpoints/ckpt-00000002.h5: No space left on device" "$WORK/disk2.out" \
     && [ "$(cat "$WORK/disk2/run/checkpoints/latest")" = ckpt-00000001.h5 ] \
     && [ "$(ls "$WORK/disk2/run/checkpoints")" = "$(printf 'ckpt-00000001.h5\nlatest')" ]; then
    pass "full disk during a checkpoint: exit 1, the earlier checkpoint kept, nothing half-written"
  else
    fail "full disk during a checkpoint: exit $code (139 is a crash inside HDF5)"; tail -3 "$WORK/disk2.out"
  fi
fi

finish
