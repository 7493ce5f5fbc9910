#!/usr/bin/env python3
"""Per-task capacity of the mask methods over seeds, as a Markdown table:
HAT's share of each hidden layer's units used by some task so far
(hat_units.csv) and CLNP's free units per hidden layer (clnp_units.csv).

    python3 scripts/unit_usage.py results/protocol_split/runs
    python3 scripts/unit_usage.py results/protocol_permuted/runs

The argument is a sweep's runs folder: hat/seed*/hat_units.csv and
clnp/seed*/clnp_units.csv under it are read (a method without runs is left
out). Each cell is the mean over seeds; CLNP's cell adds the range, since
its threshold search makes the seeds differ by whole units.
"""
import argparse
import collections
import csv
import pathlib
import statistics
import sys


def read_column(files, column):
    """{(task, layer): [value per file]} and {layer: units} from CSVs with task, layer, units columns."""
    values = collections.defaultdict(list)
    units = {}
    for path in files:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    key = (int(row["task"]), row["layer"])
                    values[key].append(float(row[column]))
                    units[row["layer"]] = int(row["units"])
                except (KeyError, ValueError) as e:
                    sys.exit(f"unit_usage.py: error: {path}: not a unit-usage CSV with a '{column}' column ({e})")
    return values, units


def layer_order(units):
    # trunk.2 before trunk.5 before trunk.10: numeric on the last dotted part
    def key(name):
        tail = name.rsplit(".", 1)[-1]
        return (name.rsplit(".", 1)[0], int(tail) if tail.isdigit() else 0, name)
    return sorted(units, key=key)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", help="a sweep's runs folder (holding hat/seed*/ and clnp/seed*/)")
    args = parser.parse_args()
    runs = pathlib.Path(args.runs)
    if not runs.is_dir():
        sys.exit(f"unit_usage.py: error: {runs}: no such folder")
    hat_files = sorted(runs.glob("hat/seed*/hat_units.csv"))
    clnp_files = sorted(runs.glob("clnp/seed*/clnp_units.csv"))
    if not hat_files and not clnp_files:
        sys.exit(f"unit_usage.py: error: {runs}: no hat/seed*/hat_units.csv or clnp/seed*/clnp_units.csv")
    hat, hat_units = read_column(hat_files, "used_so_far_percent")
    clnp, clnp_units = read_column(clnp_files, "free")
    layers = layer_order({**hat_units, **clnp_units})
    tasks = sorted({t for t, _ in hat} | {t for t, _ in clnp})

    names = " / ".join(f"{layer} ({(hat_units or clnp_units)[layer]})" for layer in layers)
    header = ["after task"]
    if hat_files:
        header.append(f"HAT units used, % ({len(hat_files)} seeds): {names}")
    if clnp_files:
        header.append(f"CLNP free units, mean (min-max) ({len(clnp_files)} seeds): {names}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for task in tasks:
        cells = [str(task)]
        if hat_files:
            cells.append(" / ".join(f"{statistics.mean(hat[(task, l)]):.1f}" if hat.get((task, l)) else "-"
                                    for l in layers))
        if clnp_files:
            cells.append(" / ".join(
                f"{statistics.mean(clnp[(task, l)]):.0f} ({min(clnp[(task, l)]):.0f}-{max(clnp[(task, l)]):.0f})"
                if clnp.get((task, l)) else "-" for l in layers))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
