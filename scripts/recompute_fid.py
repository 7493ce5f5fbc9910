#!/usr/bin/env python3
"""Recompute a generation run's last FID row without the framework.

    python3 scripts/recompute_fid.py RUN_FOLDER [--features FILE] [--data-root DIR]

The run must have been trained with generation.save_images=true (its
samples/fid_images/task_<i>.npy hold every task's FID images of the last
evaluation), scored on the test split with every test image of its classes
(eval.split=test, data.test_samples_per_task=0) of an IDX dataset
(Fashion-MNIST, MNIST). This script reads the feature file with h5py (the
checkpoint layout of docs/checkpoint_format.md), runs its LeNet with PyTorch
(conv 5x5 pad 2, ReLU, max-pool 2, twice; fc, ReLU, fc, ReLU: the 256
features), reads the real test images from the dataset's gzipped IDX files,
computes each task's Fréchet distance with NumPy (unbiased covariances;
tr sqrt(S1 S2) from the eigenvalues of sqrt(S1) S2 sqrt(S1)) and prints it
beside the run's fid_matrix.csv row. Exit status 1 when any task differs by
more than --tolerance (relative, default 1e-3).
"""
import argparse
import csv
import gzip
import os
import re
import struct
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F


def read_config(run):
    values = {}
    with open(os.path.join(run, "config.ini")) as f:
        for line in f:
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
    return values


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">i", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "i" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def idx_file(root, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(root, name)):
            return os.path.join(root, name)
    sys.exit(f"recompute_fid: {root} has no {stem}[.gz]")


def read_model(path):
    """The feature file's /model group: name -> array, in the stored order."""
    tensors = {}
    with h5py.File(path, "r") as f:
        for name in f["model"].attrs["names"]:
            name = name.decode() if isinstance(name, bytes) else str(name)
            link = "%2E" if name == "." else name.replace("%", "%25").replace("/", "%2F")
            tensors[name] = np.array(f["model"][link])
    return tensors


def lenet_features(tensors, images):
    """The 256 features of LeNet's trunk (trunk.<k>.weight in layer order: two convolutions, two fc layers)."""
    layers = sorted({int(m.group(1)) for m in (re.match(r"trunk\.(\d+)\.weight$", n) for n in tensors) if m})
    weights = [(torch.from_numpy(tensors[f"trunk.{k}.weight"]), torch.from_numpy(tensors[f"trunk.{k}.bias"]))
               for k in layers]
    if [w.dim() for w, _ in weights] != [4, 4, 2, 2]:
        sys.exit("recompute_fid: the feature file's trunk is not LeNet's (conv, conv, fc, fc)")
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 500):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + 500], dtype=np.float32))
            for w, b in weights[:2]:
                x = F.max_pool2d(F.relu(F.conv2d(x, w, b, padding=2)), 2)
            x = x.flatten(1)
            for w, b in weights[2:]:
                x = F.relu(F.linear(x, w, b))
            out.append(x.double().numpy())
    return np.concatenate(out)


def sqrt_psd(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = sqrt_psd(cov_a)
    product = root @ cov_b @ root
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the run folder (config.ini, results.json, fid_matrix.csv, samples/fid_images)")
    parser.add_argument("--features", help="the feature file (default: the run's generation.fid_features)")
    parser.add_argument("--data-root", help="the dataset folder (default: the run's data.root)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest relative difference accepted")
    args = parser.parse_args()

    config = read_config(args.run)
    if config.get("eval.split", "test") != "test" or config.get("data.test_samples_per_task", "0") != "0":
        sys.exit("recompute_fid: the run must be scored on every test image of its classes "
                 "(eval.split=test, data.test_samples_per_task=0)")
    if config.get("data.format", "idx") != "idx" or config.get("data.stream") != "split":
        sys.exit("recompute_fid: only split streams of IDX datasets (Fashion-MNIST, MNIST) are read here")
    images_dir = os.path.join(args.run, "samples", "fid_images")
    marker = os.path.join(images_dir, "after_task.txt")
    if not os.path.exists(marker):
        sys.exit(f"recompute_fid: {marker} does not exist: train with --generation.save_images=true")
    after = int(open(marker).read())
    import json
    results = json.load(open(os.path.join(args.run, "results.json")))
    task_classes = [[int(c) for c in re.search(r"\(classes ([\d ,]+)\)", name).group(1).replace(",", " ").split()]
                    for name in results["tasks"]]
    with open(os.path.join(args.run, "fid_matrix.csv")) as f:
        rows = list(csv.reader(f))
    recorded = [float(v) for v in rows[1 + after][1:]]  # header, initial, after task 1, ...

    tensors = read_model(args.features or config["generation.fid_features"])
    root = args.data_root or config["data.root"]
    test_images = read_idx(idx_file(root, "t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    test_labels = read_idx(idx_file(root, "t10k-labels-idx1-ubyte"))
    test_images = test_images.reshape(len(test_images), 1, *test_images.shape[1:])

    print(f"FID after {'training' if after == 0 else 'task ' + str(after)}: run vs recomputed")
    print("| task | classes | run | recomputed | relative difference |")
    print("|---|---|---:|---:|---:|")
    worst = 0.0
    for task, classes in enumerate(task_classes):
        generated = np.load(os.path.join(images_dir, f"task_{task + 1}.npy"))
        real = test_images[np.isin(test_labels, classes)]
        value = frechet_distance(lenet_features(tensors, generated), lenet_features(tensors, real))
        difference = abs(value - recorded[task]) / max(1.0, abs(recorded[task]))
        worst = max(worst, difference)
        print(f"| {task + 1} | {' '.join(map(str, classes))} | {recorded[task]:.4f} | {value:.4f} | {difference:.2e} |")
    print(f"largest relative difference {worst:.2e} (tolerance {args.tolerance:g})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
