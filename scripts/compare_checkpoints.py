#!/usr/bin/env python3
"""Compares the checkpoints of two runs of the same configuration (e.g. 1 rank
and 2 ranks): for every checkpoint position both runs wrote (stage, phase,
optimizer step), the largest difference of each model and strategy tensor and
the number of pruning-mask elements on which they disagree.

    python3 scripts/compare_checkpoints.py RUN_DIR_A RUN_DIR_B

Reads the HDF5 layout of docs/checkpoint_format.md with h5py (scripts/setup.sh
installs it). Run both with --run.keep_checkpoints large enough to keep every
checkpoint, and --run.checkpoint_every_steps N for positions inside a task.
"""
import glob
import sys

import h5py
import numpy as np


def checkpoints(run_dir):
    found = {}
    for path in sorted(glob.glob(run_dir + "/checkpoints/ckpt-*.h5")):
        handle = h5py.File(path, "r")
        attrs = handle.attrs
        found[(int(attrs["stage"]), attrs["phase"].decode(), int(attrs.get("global_step", 0)))] = handle
    return found


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = checkpoints(sys.argv[1]), checkpoints(sys.argv[2])
    common = sorted(set(a) & set(b), key=lambda key: (key[0], key[2]))
    if not common:
        sys.exit("compare_checkpoints: the two runs have no checkpoint position in common")
    for key in common:
        print("== stage %d, %s, step %d" % key)
        for group in ("model", "strategy"):
            for name in a[key][group]:
                if name not in b[key][group]:
                    print("  %s/%s: only in the first run" % (group, name))
                    continue
                x, y = a[key][group][name][()], b[key][group][name][()]
                if x.dtype.kind not in "fbiu" or x.size < 2:
                    continue
                if name.startswith("mask."):
                    print("  %-34s %d of %d elements disagree (free: %d vs %d)"
                          % (group + "/" + name, int((x != y).sum()), x.size, int((x == 0).sum()), int((y == 0).sum())))
                else:
                    d = np.abs(x.astype(np.float64) - y.astype(np.float64))
                    print("  %-34s largest difference %.3g (largest value %.3g), %d elements differ"
                          % (group + "/" + name, d.max(), np.abs(x).max(), int((d > 0).sum())))


if __name__ == "__main__":
    main()
