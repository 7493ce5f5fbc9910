#!/usr/bin/env python3
"""Recomputes ANPyC's importance of a task from a checkpoint, independently of
the C++ code, under DESIGN.md section 4.2, and compares it with the Omega the
checkpoint stores.

    /usr/bin/python3 scripts/recompute_importance.py RUN_DIR [--stage 1]

RUN_DIR is a `train` run of ANPyC on an MLP over Fashion-MNIST-format IDX data
(split or permuted stream) that kept its checkpoints, e.g.

    build/train --config configs/paper/split_fmnist.ini --train.algorithm anpyc \\
      --data.tasks 2 --train.epochs 2 --anpyc.retrain_epochs 1 \\
      --run.keep_checkpoints 100 --output runs/omega_check

The checkpoint written between stage S and S+1 (`--stage S`, default 1) holds
the weights the importance of task S was computed on (after its last pruning
step and retraining) and Omega(1:S). For S = 1 that is Omega_1 itself; for
S > 1 the script subtracts Omega(1:S-1) from the previous stage's checkpoint
(anpyc.accumulate = sum). From the effective configuration in the checkpoint
it rebuilds, with NumPy and PyTorch alone:

  - the task's training rows: the rows of its classes (every row for a
    permuted stream), shuffled by the data seed (SplitMix64, Fisher-Yates),
    the sample limit's prefix, the validation prefix removed;
  - the importance: batches of anpyc.importance_batch rows in that order;
    H_B = sum (or mean) over the batch of -sum_k q_k log q_k of the task's
    head in eval mode; g = dH_B/dtheta; omega_B = max(0, s g theta +
    0.5 g^2 theta^2) per element (h = g^2); Omega_t = the mean over batches.

Prints, per shared tensor, the largest absolute and relative difference, and
exits 1 when any relative difference exceeds --tolerance (default 1e-4). The
per-sample Fisher (anpyc.hessian = fisher) is not reproduced here.
"""
import argparse
import glob
import gzip
import os
import sys

import h5py
import numpy as np
import torch

MASK64 = (1 << 64) - 1


class SplitMix64:
    def __init__(self, state):
        self.state = state & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, bound):
        # Lemire's nearly-divisionless method with rejection.
        product = self.next() * bound
        low = product & MASK64
        if low < bound:
            threshold = ((1 << 64) - bound) % bound
            while low < threshold:
                product = self.next() * bound
                low = product & MASK64
        return product >> 64


def mix_seed(values):
    seed = 0x5EED5EED5EED5EED
    for value in values:
        seed = SplitMix64(seed ^ ((value * 0x9E3779B97F4A7C15) & MASK64)).next()
    return seed


def seeded_permutation(n, seed):
    order = np.arange(n, dtype=np.int64)
    generator = SplitMix64(seed)
    for i in range(n - 1, 0, -1):
        j = generator.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def read_idx(path):
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def text(value):
    return value.decode() if isinstance(value, (bytes, np.bytes_)) else str(value)


def read_config(handle):
    config = {}
    for line in text(handle["config"][()]).splitlines():
        if " = " in line:
            key, value = line.split(" = ", 1)
            config[key.strip()] = value.strip()
        elif line.endswith(" ="):
            config[line[:-2].strip()] = ""
    return config


def checkpoint_between(run_dir, stage):
    """The checkpoint written after `stage` stages (root attributes stage = S, phase between_tasks)."""
    for path in sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.h5"))):
        handle = h5py.File(path, "r")
        if int(handle.attrs["stage"]) == stage and text(handle.attrs["phase"]) == "between_tasks":
            return path, handle
        handle.close()
    sys.exit(f"recompute_importance: error: no between_tasks checkpoint with stage {stage} in {run_dir}/checkpoints "
             "(run train with --run.keep_checkpoints large enough to keep every checkpoint)")


def task_rows(config, labels, task):
    """The task's training rows in the stored order, and its classes (None: every class)."""
    kind = config["data.stream"]
    seed = int(config["data.seed"])
    num_classes = int(labels.max()) + 1
    if kind == "permuted":
        classes = None
        rows = np.arange(len(labels), dtype=np.int64)
    elif kind == "split":
        order = list(range(num_classes))
        if config["data.class_order"] == "shuffled":
            order = list(seeded_permutation(num_classes, mix_seed([seed, 0xC1A55])))
        per_task = int(config["data.classes_per_task"])
        classes = order[task * per_task:(task + 1) * per_task]
        rows = np.nonzero(np.isin(labels, classes))[0].astype(np.int64)
    else:
        sys.exit(f"recompute_importance: error: data.stream={kind}: only split and permuted are reproduced")
    task_seed = mix_seed([seed, 0x7A5C, task])
    rows = rows[seeded_permutation(len(rows), task_seed)]
    limit = int(config["data.train_samples_per_task"])
    if 0 < limit < len(rows):
        rows = rows[:limit]
    validation = int(np.floor(float(config["data.validation_fraction"]) * len(rows) + 0.5))  # llround
    return rows[validation:], classes


def task_inputs(config, images, rows, task):
    x = torch.from_numpy(images[rows].astype(np.float32) / 255.0).reshape(len(rows), -1)
    if config["data.stream"] == "permuted" and (task > 0 or config["data.permute_first"] == "true"):
        permutation = seeded_permutation(x.shape[1], mix_seed([int(config["data.seed"]), 0x9E12, task]))
        x = x[:, torch.from_numpy(permutation)]
    return x


def shared_layers(model):
    """(name, weight, bias) of the MLP trunk's Linear layers, in order."""
    layers = sorted({key.rsplit(".", 1)[0] for key in model if key.startswith("trunk.")},
                    key=lambda name: int(name.split(".")[1]))
    return [(name, torch.tensor(model[name + ".weight"][()]), torch.tensor(model[name + ".bias"][()]))
            for name in layers]


def importance(config, model, x, head):
    if config["model.arch"] != "mlp":
        sys.exit("recompute_importance: error: model.arch must be mlp")
    if config["anpyc.hessian"] != "gradient_squared":
        sys.exit("recompute_importance: error: anpyc.hessian=fisher is not reproduced here")
    sign = float(config["anpyc.sign"])
    batch = int(config["anpyc.importance_batch"])
    reduce_sum = config["anpyc.entropy"] == "sum"
    layers = shared_layers(model)
    parameters = []
    for _, weight, bias in layers:
        parameters += [weight.requires_grad_(True), bias.requires_grad_(True)]
    head_weight = torch.tensor(model[f"heads.{head}.weight"][()])
    head_bias = torch.tensor(model[f"heads.{head}.bias"][()])
    totals = [torch.zeros_like(p) for p in parameters]
    batches = (len(x) + batch - 1) // batch
    for b in range(batches):
        h = x[b * batch:(b + 1) * batch]
        for _, weight, bias in layers:  # Linear then ReLU; dropout is off in eval mode
            h = torch.relu(h @ weight.T + bias)
        q = torch.softmax(h @ head_weight.T + head_bias, dim=1)
        entropies = -(q * q.clamp_min(1e-12).log()).sum(1)
        objective = entropies.sum() if reduce_sum else entropies.mean()
        grads = torch.autograd.grad(objective, parameters)
        with torch.no_grad():
            for total, g, theta in zip(totals, grads, parameters):
                g_theta = g * theta
                total += (sign * g_theta + 0.5 * g_theta * g_theta).clamp_min(0.0)
    names = []
    for name, _, _ in layers:
        names += [name + ".weight", name + ".bias"]
    return {name: (total / batches).detach().numpy().astype(np.float64) for name, total in zip(names, totals)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--stage", type=int, default=1, help="the task whose importance to recompute (1-based)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative difference accepted")
    args = parser.parse_args()

    path, handle = checkpoint_between(args.run_dir, args.stage)
    config = read_config(handle)
    if config["train.algorithm"] != "anpyc":
        sys.exit(f"recompute_importance: error: {path} is a {config['train.algorithm']} run, not anpyc")
    root = config["data.root"]
    images = read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    task = args.stage - 1
    rows, classes = task_rows(config, labels, task)
    heads = sorted({int(key.split(".")[1]) for key in handle["model"] if key.startswith("heads.")})
    head = task if len(heads) > 1 else 0
    recomputed = importance(config, handle["model"], task_inputs(config, images, rows, task), head)

    stored = {name: handle["strategy"]["omega." + name][()].astype(np.float64) for name in recomputed}
    if args.stage > 1:
        if config["anpyc.accumulate"] != "sum":
            sys.exit("recompute_importance: error: --stage > 1 needs anpyc.accumulate = sum")
        _, previous = checkpoint_between(args.run_dir, args.stage - 1)
        stored = {name: value - previous["strategy"]["omega." + name][()] for name, value in stored.items()}

    print(f"{path}: task {args.stage} ({'every class' if classes is None else 'classes ' + str(classes)}), "
          f"{len(rows)} training rows, importance batches of {config['anpyc.importance_batch']}, "
          f"entropy {config['anpyc.entropy']}, s = {config['anpyc.sign']}, head {head}")
    print(f"{'tensor':<18} {'sum Omega (stored)':>20} {'sum (recomputed)':>20} {'max |diff|':>12} {'max rel diff':>13}")
    worst = 0.0
    for name, value in recomputed.items():
        difference = np.abs(stored[name] - value)
        scale = max(np.abs(stored[name]).max(), np.finfo(np.float32).tiny)
        relative = difference.max() / scale
        worst = max(worst, relative)
        print(f"{name:<18} {stored[name].sum():>20.8e} {value.sum():>20.8e} {difference.max():>12.3e} {relative:>13.3e}")
    print(f"largest relative difference {worst:.3e} (of each tensor's largest Omega): "
          + ("agrees" if worst <= args.tolerance else "DIFFERS"))
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
