#!/usr/bin/env python3
"""Seconds per task of finished `train` runs, split into training epochs,
ANPyC's pruning retraining epochs and the rest (evaluation, importance,
pruning decisions, checkpoints), from each run's train.log.

    python3 scripts/stage_costs.py results/protocol_split/runs/*/seed*

Runs are grouped by their parent folder (the sweep's method name). The log
is the source because results.json records only the stage's total: the
per-epoch durations the trainer prints ("task 2 epoch 3/30: ... 0.4s") and
the stage boundaries ("== stage k/N" ... "after task k:") give the split.
Wall times depend on what else ran on the machine: compare methods within
one set of runs, not across machines.
"""
import argparse
import collections
import datetime
import pathlib
import re
import statistics
import sys

STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] (.*)$")
# "== stage 2/5: task 2 (...)" or, for joint training, "== stage 1/1: tasks 1-5, ..."
STAGE = re.compile(r"^== stage \d+/\d+: tasks? (\d+)(?:-(\d+))?")
AFTER = re.compile(r"^after tasks? [\d-]+:")
# "task 1 epoch 3/30: ..., 0.4s, lr ...", "task 1 retrain (pruned 10%) 3/30: ..., 1m02s, lr ..."
# and, under anpyc.retrain_until_recovered, "task 1 retrain (pruned 10%) epoch 3 of at most 30 1/1: ..."
EPOCH = re.compile(r"^tasks? [\d-]+ (epoch|retrain \(pruned [0-9.]+%\)(?: epoch \d+ of at most \d+)?) \d+/\d+: "
                   r".*?, ((?:\d+m)?[0-9.]+s)(?:,|$| \|)")


def seconds(text):
    minutes, _, rest = text.rpartition("m")
    return (float(minutes) * 60 if minutes else 0.0) + float(rest.rstrip("s"))


def stage_costs(log_path):
    """[(wall, training, retraining)] per task of one log (a joint stage's
    figures divided by its task count); raises on a log with no finished
    stage."""
    stages, start, train, retrain, tasks = [], None, 0.0, 0.0, 1
    for line in log_path.read_text().splitlines():
        match = STAMP.match(line)
        if not match:
            continue
        when = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
        text = match.group(2)
        if stage := STAGE.match(text):
            start, train, retrain = when, 0.0, 0.0
            tasks = int(stage.group(2)) - int(stage.group(1)) + 1 if stage.group(2) else 1
        elif (epoch := EPOCH.match(text)) and start is not None:
            if epoch.group(1) == "epoch":
                train += seconds(epoch.group(2))
            else:
                retrain += seconds(epoch.group(2))
        elif AFTER.match(text) and start is not None:
            stages.extend([((when - start).total_seconds() / tasks, train / tasks, retrain / tasks)] * tasks)
            start = None
    if not stages:
        raise ValueError(f"{log_path}: no finished stage ('== stage' ... 'after task')")
    return stages


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (each with train.log)")
    parser.add_argument("--csv", help="also write the table as CSV to this file")
    args = parser.parse_args()

    per_method = collections.defaultdict(list)
    for run in map(pathlib.Path, args.runs):
        log = run / "train.log"
        if not log.is_file():
            sys.exit(f"stage_costs: error: {log}: no such file (is {run} a run folder?)")
        try:
            per_method[run.parent.name].append(stage_costs(log))
        except ValueError as error:
            sys.exit(f"stage_costs: error: {error}")

    header = ["method", "runs", "s per task", "training epochs", "retraining epochs", "other", "retraining share"]
    rows = []
    for method, runs in per_method.items():
        stages = [stage for run in runs for stage in run]
        wall = statistics.mean(s[0] for s in stages)
        train = statistics.mean(s[1] for s in stages)
        retrain = statistics.mean(s[2] for s in stages)
        rows.append([method, str(len(runs)), f"{wall:.1f}", f"{train:.1f}", f"{retrain:.1f}",
                     f"{max(wall - train - retrain, 0.0):.1f}", f"{100 * retrain / wall:.0f}%"])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.csv:
        with open(args.csv, "w") as out:
            out.write(",".join(header) + "\n")
            for row in rows:
                out.write(",".join(row) + "\n")


if __name__ == "__main__":
    main()
