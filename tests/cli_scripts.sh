# The result scripts on small files written here in the formats the runs write:
# scripts/unit_usage.py's table of HAT's unit usage and CLNP's free units (mean
# over seeds, CLNP's range), and its refusals; scripts/recompute_importance.py
# on a short ANPyC run (2 ranks, s = -1, mean entropy, a validation hold-out):
# the checkpoints' Omega recomputed without the framework; scripts/stage_costs.py's
# split of seconds per task on hand-written logs; scripts/recompute_masks.py on a
# 3-task ANPyC run's per-step checkpoints (2 ranks), and on a tampered mask.
source "$SOURCE_DIR/tests/cli_lib.sh"
RUNS="$WORK/runs"
mkdir -p "$RUNS/hat/seed1" "$RUNS/hat/seed2" "$RUNS/clnp/seed1" "$RUNS/clnp/seed2"
cat >"$RUNS/hat/seed1/hat_units.csv" <<'CSV'
task,layer,units,used_by_task,used_so_far,used_so_far_percent
1,trunk.2,8,4,4,50
1,trunk.10,4,1,1,25
2,trunk.2,8,3,6,75
2,trunk.10,4,2,2,50
CSV
cat >"$RUNS/hat/seed2/hat_units.csv" <<'CSV'
task,layer,units,used_by_task,used_so_far,used_so_far_percent
1,trunk.2,8,2,2,25
1,trunk.10,4,1,1,25
2,trunk.2,8,4,5,62.5
2,trunk.10,4,4,4,100
CSV
cat >"$RUNS/clnp/seed1/clnp_units.csv" <<'CSV'
task,layer,units,owned_by_task,owned_by_earlier_tasks,free
1,trunk.2,8,2,0,6
1,trunk.10,4,1,0,3
2,trunk.2,8,1,2,5
2,trunk.10,4,1,1,2
CSV
cat >"$RUNS/clnp/seed2/clnp_units.csv" <<'CSV'
task,layer,units,owned_by_task,owned_by_earlier_tasks,free
1,trunk.2,8,4,0,4
1,trunk.10,4,2,0,2
2,trunk.2,8,0,4,4
2,trunk.10,4,2,2,0
CSV
/usr/bin/env python3 "$SOURCE_DIR/scripts/unit_usage.py" "$RUNS" >"$WORK/table.md" 2>"$WORK/err.txt"
# Layers in numeric order (trunk.2 before trunk.10); HAT: mean percent; CLNP: mean (min-max) free units.
expected='| after task | HAT units used, % (2 seeds): trunk.2 (8) / trunk.10 (4) | CLNP free units, mean (min-max) (2 seeds): trunk.2 (8) / trunk.10 (4) |
|---|---|---|
| 1 | 37.5 / 25.0 | 5 (4-6) / 2 (2-3) |
| 2 | 68.8 / 75.0 | 4 (4-5) / 1 (0-2) |'
if [ "$(cat "$WORK/table.md")" = "$expected" ]; then pass "unit_usage.py: means over seeds, CLNP's range, layers in order"
else fail "unit_usage.py table"; diff <(echo "$expected") "$WORK/table.md" | sed 's/^/    /'; cat "$WORK/err.txt"; fi
expect_failure "unit_usage.py on a missing folder" "$WORK/none: no such folder" \
  /usr/bin/env python3 "$SOURCE_DIR/scripts/unit_usage.py" "$WORK/none"
mkdir -p "$WORK/empty"
expect_failure "unit_usage.py on a folder without runs" "no hat/seed*/hat_units.csv or clnp/seed*/clnp_units.csv" \
  /usr/bin/env python3 "$SOURCE_DIR/scripts/unit_usage.py" "$WORK/empty"
mkdir -p "$WORK/broken/clnp/seed1" && printf 'task,layer,units\n1,trunk.2,8\n' >"$WORK/broken/clnp/seed1/clnp_units.csv"
expect_failure "unit_usage.py on a CSV without its column" "not a unit-usage CSV with a 'free' column" \
  /usr/bin/env python3 "$SOURCE_DIR/scripts/unit_usage.py" "$WORK/broken"

# scripts/stage_costs.py on hand-written logs: seconds per task split into training epochs,
# retraining epochs (both of ANPyC's retraining labels) and the rest; a joint stage's
# figures divided by its task count.
mkdir -p "$WORK/costs/anpyc/seed1" "$WORK/costs/joint/seed1"
cat >"$WORK/costs/anpyc/seed1/train.log" <<'LOG'
[2026-12-02 06:50:00] == stage 1/2: task 1 (classes 0 1), strategy anpyc
[2026-12-02 06:50:01] task 1 epoch 1/2: loss 0.4239, train accuracy 85.22%, 2.5s, lr 0.02 | task ~10.0s left
[2026-12-02 06:50:03] task 1 epoch 2/2: loss 0.3, train accuracy 88.00%, 1.5s, lr 0.02
[2026-12-02 06:50:10] task 1 retrain (pruned 10%) 1/1: loss 0.18, train accuracy 93.40%, 1m02s, lr 0.01
[2026-12-02 06:51:40] after task 1: accuracy 95.35 51.00 | mean over trained 95.35% | train 1m40s
[2026-12-02 06:51:40] == stage 2/2: task 2 (classes 2 3), strategy anpyc
[2026-12-02 06:51:41] task 2 epoch 1/1: loss 0.4, train accuracy 85.00%, 10s, lr 0.02
[2026-12-02 06:51:50] task 2 retrain (pruned 10%) epoch 1 of at most 30 1/1: loss 0.2, train accuracy 93.00%, 20s, lr 0.01
[2026-12-02 06:52:10] task 2 retrain (pruned 20%) epoch 2 of at most 30 1/1: loss 0.2, train accuracy 93.00%, 5.0s, lr 0.01
[2026-12-02 06:52:20] after task 2: accuracy 95.00 90.00 | mean over trained 92.50% | train 40s
LOG
cat >"$WORK/costs/joint/seed1/train.log" <<'LOG'
[2026-12-02 06:20:00] == stage 1/1: tasks 1-2, strategy joint
[2026-12-02 06:20:10] tasks 1-2 epoch 1/1: loss 0.4, train accuracy 85.00%, 8.0s, lr 0.02
[2026-12-02 06:20:20] after tasks 1-2: accuracy 98.25 96.45 | mean over trained 97.35% | train 20s
LOG
/usr/bin/env python3 "$SOURCE_DIR/scripts/stage_costs.py" "$WORK/costs/anpyc/seed1" "$WORK/costs/joint/seed1" \
  >"$WORK/costs.md" 2>"$WORK/err.txt"
# anpyc: task 1 100 s = 4 training + 62 retraining + 34 other; task 2 40 s = 10 + 25 + 5;
# means 70 / 7 / 43.5 / 19.5, retraining 43.5 / 70 = 62%. joint: 20 s over 2 tasks.
expected='| method | runs | s per task | training epochs | retraining epochs | other | retraining share |
|---|---|---|---|---|---|---|
| anpyc | 1 | 70.0 | 7.0 | 43.5 | 19.5 | 62% |
| joint | 1 | 10.0 | 4.0 | 0.0 | 6.0 | 0% |'
if [ "$(cat "$WORK/costs.md")" = "$expected" ]; then pass "stage_costs.py: training, both retraining labels, joint per task"
else fail "stage_costs.py table"; diff <(echo "$expected") "$WORK/costs.md" | sed 's/^/    /'; cat "$WORK/err.txt"; fi
expect_failure "stage_costs.py on a folder without train.log" "no such file (is $WORK/empty a run folder?)" \
  /usr/bin/env python3 "$SOURCE_DIR/scripts/stage_costs.py" "$WORK/empty"

# ANPyC's Omega recomputed from the checkpoints with NumPy and PyTorch alone (Debian's
# python3-h5py, python3-torch, python3-numpy, which another python3 on PATH may lack).
PYTHON=python3
for candidate in /usr/bin/python3 python3; do
  "$candidate" -c 'import h5py, numpy, torch' 2>/dev/null && { PYTHON=$candidate; break; }
done
OMEGA_RUN=(--config "$SOURCE_DIR/configs/paper/permuted_fmnist.ini" --train.algorithm anpyc --anpyc.sign -1
           --anpyc.entropy mean --data.tasks 2 --train.epochs 2 --anpyc.retrain_epochs 1
           --data.train_samples_per_task 600 --data.test_samples_per_task 100 --data.validation_fraction 0.1
           --eval.split validation --run.keep_checkpoints 100 --run.threads 1)
if timeout 300 "${MPI[@]}" -np 2 "$TRAIN" "${OMEGA_RUN[@]}" --output "$WORK/omega" > "$WORK/omega.out" 2>&1 \
   && "$PYTHON" "$SOURCE_DIR/scripts/recompute_importance.py" "$WORK/omega" > "$WORK/omega1.txt" 2>&1 \
   && "$PYTHON" "$SOURCE_DIR/scripts/recompute_importance.py" "$WORK/omega" --stage 2 > "$WORK/omega2.txt" 2>&1 \
   && grep -q "540 training rows" "$WORK/omega1.txt" && ! grep -q " 0.00000000e+00 " "$WORK/omega1.txt"; then
  pass "recompute_importance.py: Omega of tasks 1 and 2 on 2 ranks ($(tail -1 "$WORK/omega2.txt"))"
else fail "recompute_importance.py"; tail -5 "$WORK/omega.out"; cat "$WORK/omega1.txt" "$WORK/omega2.txt"; fi
expect_failure "recompute_importance.py without kept checkpoints" "no between_tasks checkpoint with stage 3" \
  "$PYTHON" "$SOURCE_DIR/scripts/recompute_importance.py" "$WORK/omega" --stage 3

# Every pruning decision of a 3-task ANPyC run on 2 ranks recomputed from its per-step
# checkpoints (scripts/recompute_masks.py: Omega on the weights before the step, the
# percentile rule, the candidates of task 2), then a checkpoint whose mask frees one more
# trained weight than the rule does: refused.
MASK_RUN=(--config "$SOURCE_DIR/configs/paper/split_fmnist.ini" --train.algorithm anpyc --data.tasks 3
          --train.epochs 3 --anpyc.retrain_epochs 1 --anpyc.first_budget 0.2 --data.train_samples_per_task 1000
          --data.test_samples_per_task 100 --run.checkpoint_every_steps 1 --run.keep_checkpoints 1000 --run.threads 1)
if timeout 300 "${MPI[@]}" -np 2 "$TRAIN" "${MASK_RUN[@]}" --output "$WORK/masks" > "$WORK/masks.out" 2>&1 \
   && "$PYTHON" "$SOURCE_DIR/scripts/recompute_masks.py" "$WORK/masks" > "$WORK/masks.txt" 2>&1 \
   && grep -q "^task 2 step 2 (20%)" "$WORK/masks.txt" && grep -q "^16 tensor decisions checked: all agree" "$WORK/masks.txt"; then
  pass "recompute_masks.py: 4 pruning steps of tasks 1-2 on 2 ranks ($(tail -1 "$WORK/masks.txt"))"
else fail "recompute_masks.py"; tail -5 "$WORK/masks.out"; cat "$WORK/masks.txt"; fi
"$PYTHON" - "$WORK/masks/checkpoints" <<'PY'
import glob, sys, h5py, numpy as np
for path in sorted(glob.glob(sys.argv[1] + "/ckpt-*.h5")):
    with h5py.File(path, "r+") as f:
        if f.attrs["phase"] in (b"after_task", "after_task") and int(f["strategy/progress.steps_done"][()]) == 0:
            mask = f["strategy/mask.trunk.4.weight"]
            values, weights = mask[()], f["model/trunk.4.weight"][()]
            index = np.unravel_index(np.argmax(np.where(values > 0.5, np.abs(weights), -1.0)), values.shape)
            values[index] = 0.0  # a used, trained weight marked free
            mask[...] = values
            break
PY
if "$PYTHON" "$SOURCE_DIR/scripts/recompute_masks.py" "$WORK/masks" > "$WORK/tampered.txt" 2>&1; then
  fail "recompute_masks.py accepted a mask with one weight freed against the rule"
elif grep -q "trunk.4.weight .* differ 1 (0 at the threshold)  freed but nonzero 1  MISMATCH" "$WORK/tampered.txt" \
     && grep -q "DIFFER" "$WORK/tampered.txt"; then
  pass "recompute_masks.py finds the one weight a tampered checkpoint frees against the rule"
else fail "recompute_masks.py on a tampered mask"; cat "$WORK/tampered.txt"; fi

finish
