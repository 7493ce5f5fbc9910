#!/usr/bin/env python3
"""Recomputes every pruning decision of ANPyC's released rule from a run's
checkpoints, independently of the C++ code, under DESIGN.md section 4.2, and
compares the free sets with the masks the checkpoints store.

    /usr/bin/python3 scripts/recompute_masks.py RUN_DIR

RUN_DIR is a `train` run of ANPyC (anpyc.prune_schedule = released,
anpyc.threshold = per_tensor) on an MLP over Fashion-MNIST-format IDX data
that checkpointed after every optimizer step and kept every checkpoint:

    build/train --config configs/paper/split_fmnist.ini --train.algorithm anpyc \\
      --data.tasks 3 --train.epochs 2 --anpyc.retrain_epochs 1 \\
      --data.train_samples_per_task 600 --run.checkpoint_every_steps 1 \\
      --run.keep_checkpoints 1000 --output runs/mask_check

A pruning step's decision is taken between two consecutive checkpoints: the
one before it holds the weights the decision read (the last step of the
task's training, or of the previous step's retraining) and the first
retraining checkpoint after it holds the mask it wrote. For every step of
every pruned task the script rebuilds, with NumPy and PyTorch alone:

  - the step percentages: budget P_1 = anpyc.first_budget, P_t =
    floor(decay * P_{t-1}) in whole percent, steps of anpyc.step up to the
    first one that reaches P_t;
  - Omega_t on the weights before the decision (scripts/recompute_importance.py);
  - task 1: free where Omega_t == 0 or Omega_t < the p-th percentile of the
    tensor's Omega_t (numpy's linear interpolation); task t > 1: among the
    candidates (free in the checkpoint written after task t-1), free where
    Omega_t <= the p-th percentile of the candidates' Omega_t; the free set
    of the step before is kept (free sets only grow within a task);

and checks that the stored mask frees exactly that set and that the freed
weights hold 0. A weight whose recomputed Omega lies within --tolerance
(relative to the tensor's largest Omega) of the threshold can fall on either
side of it in float32 and is counted apart; any other difference fails
(exit 1).
"""
import argparse
import glob
import math
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recompute_importance import importance, read_config, read_idx, task_inputs, task_rows, text  # noqa: E402


def error(message):
    sys.exit(f"recompute_masks: error: {message}")


def step_percents(task, config):
    """The released schedule's step percentages after task `task` (1-based)."""
    first = round(100 * float(config["anpyc.first_budget"]))
    decay = float(config["anpyc.decay"])
    step = round(100 * float(config["anpyc.step"]))
    budget = first
    for _ in range(task - 1):
        budget = math.floor(decay * budget + 1e-9)
    steps = []
    percent = step
    while budget > 0:
        steps.append(percent)
        if percent >= budget:
            break
        percent += step
    return steps


def load_checkpoints(run_dir):
    """Every checkpoint's (path, stage, phase, global step, steps_done, retraining), in writing order."""
    paths = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.h5")))
    if not paths:
        error(f"no checkpoint in {run_dir}/checkpoints")
    rows = []
    for path in paths:
        with h5py.File(path, "r") as handle:
            strategy = handle["strategy"]
            rows.append({
                "path": path,
                "stage": int(handle.attrs["stage"]),
                "phase": text(handle.attrs["phase"]),
                "global_step": int(handle.attrs["global_step"]),
                "steps_done": int(strategy["progress.steps_done"][()]),
                "retraining": int(strategy["progress.retraining"][()]),
            })
    return rows


def free_set(group, name):
    return group["strategy"]["mask." + name][()] < 0.5


def decide(omega, candidates, previous_free, percent, first_task):
    """The free set after one step, and the threshold it used, for one tensor."""
    if first_task:
        threshold = np.percentile(omega, percent)
        newly = (omega == 0) | (omega < threshold)
    else:
        if not candidates.any():
            return previous_free.copy(), None
        threshold = np.percentile(omega[candidates], percent)
        newly = candidates & (omega <= threshold)
    return previous_free | newly, threshold


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="relative distance to the threshold (of the tensor's largest Omega) within which a "
                             "weight may fall on either side")
    args = parser.parse_args()

    checkpoints = load_checkpoints(args.run_dir)
    with h5py.File(checkpoints[0]["path"], "r") as handle:
        config = read_config(handle)
    if config["train.algorithm"] != "anpyc" or config["anpyc.prune"] != "true":
        error(f"{args.run_dir} is not an ANPyC run with pruning")
    if config["anpyc.prune_schedule"] != "released" or config["anpyc.threshold"] != "per_tensor":
        error("only anpyc.prune_schedule = released with anpyc.threshold = per_tensor is reproduced")
    images = read_idx(os.path.join(config["data.root"], "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(config["data.root"], "train-labels-idx1-ubyte.gz")).astype(np.int64)
    tasks = int(config["data.tasks"])

    failures = 0
    checked = 0
    for task in range(1, tasks):  # the last task is not pruned
        percents = step_percents(task, config)
        candidates = None
        if task > 1:
            between = [c for c in checkpoints if c["phase"] == "between_tasks" and c["stage"] == task - 1]
            if not between:
                error(f"no between_tasks checkpoint after task {task - 1} (keep every checkpoint)")
            with h5py.File(between[-1]["path"], "r") as handle:
                names = [key[len("mask."):] for key in handle["strategy"] if key.startswith("mask.")]
                candidates = {name: free_set(handle, name) for name in names}
        rows, classes = task_rows(config, labels, task - 1)
        x = task_inputs(config, images, rows, task - 1)
        for step, percent in enumerate(percents):
            index = next((k for k, c in enumerate(checkpoints)
                          if c["stage"] == task - 1 and c["phase"] == "after_task" and c["steps_done"] == step
                          and c["retraining"] == 1), None)
            if index is None or index == 0:
                error(f"task {task} step {step + 1} ({percent}%): no retraining checkpoint (run with "
                      "--run.checkpoint_every_steps 1 --run.keep_checkpoints large enough to keep all, and "
                      "anpyc.retrain_epochs >= 1)")
            before, after = checkpoints[index - 1], checkpoints[index]
            if after["global_step"] != before["global_step"] + 1:
                error(f"{after['path']}: the checkpoint before it ({before['path']}) is not one optimizer step "
                      "earlier (run with --run.checkpoint_every_steps 1)")
            with h5py.File(before["path"], "r") as old, h5py.File(after["path"], "r") as new:
                heads = sorted({int(key.split(".")[1]) for key in old["model"] if key.startswith("heads.")})
                head = task - 1 if len(heads) > 1 else 0
                omega = importance(config, old["model"], x, head)
                print(f"task {task} step {step + 1} ({percent}%): weights of {os.path.basename(before['path'])}, "
                      f"mask of {os.path.basename(after['path'])}")
                for name, value in omega.items():
                    first_task = task == 1
                    tensor_candidates = None if first_task else candidates[name]
                    previous = free_set(old, name) if step > 0 else np.zeros(value.shape, dtype=bool)
                    expected, threshold = decide(value, tensor_candidates, previous, percent, first_task)
                    stored = free_set(new, name)
                    differ = expected != stored
                    scale = max(np.abs(value).max(), np.finfo(np.float32).tiny)
                    near = np.zeros_like(differ)
                    if threshold is not None:
                        near = np.abs(value - threshold) <= args.tolerance * scale
                        if first_task:
                            near |= np.abs(value) <= args.tolerance * scale
                    unexplained = int((differ & ~near).sum())
                    nonzero_freed = int((new["model"][name][()][stored] != 0).sum())
                    checked += 1
                    ok = unexplained == 0 and nonzero_freed == 0
                    failures += not ok
                    print(f"  {name:<16} free {int(stored.sum()):>7} of {stored.size:<7} recomputed "
                          f"{int(expected.sum()):>7}  differ {int(differ.sum())} "
                          f"({int((differ & near).sum())} at the threshold)  freed but nonzero {nonzero_freed}"
                          + ("" if ok else "  MISMATCH"))
    if checked == 0:
        error(f"{args.run_dir}: no pruning step to check (data.tasks = {tasks})")
    print(f"{checked} tensor decisions checked: " + ("all agree" if failures == 0 else f"{failures} DIFFER"))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
