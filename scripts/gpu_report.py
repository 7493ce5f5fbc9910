#!/usr/bin/env python3
"""Writes OUT/gpu_report.md and OUT/gpu_report.json from what scripts/gpu_check.sh
left in OUT: phases.tsv, env.json, unit.xml, runs/*/results.json and
bench/{ours_fp32,ours_bf16,pytorch}.json. Any of them may be missing (a phase
failed or had no time): its figures are then reported as not measured.

    python3 scripts/gpu_report.py OUT

The targets (GPU issue): the framework's steps/s at least 95% of PyTorch eager
on the same device, model, batch and precision; one-rank NCCL overhead at most
3%; the ANPyC importance pass at most one epoch; ResNet-18 bf16 at least 1.5x
its fp32 steps/s. Standard library only: it runs with any Python 3.
"""
import csv
import json
import os
import sys
import xml.etree.ElementTree as ElementTree

TRAIN_RUNS = ["mlp_fp32", "mlp_bf16", "resnet18_fp32", "resnet18_bf16"]
MODELS = ["mlp", "resnet18"]
PRECISIONS = ["fp32", "bf16"]


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_phases(out):
    try:
        with open(os.path.join(out, "phases.tsv")) as f:
            return list(csv.DictReader(f, delimiter="\t"))
    except OSError:
        return []


def read_unit(out):
    path = os.path.join(out, "unit.xml")
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    failed = [f"{case.get('classname')}.{case.get('name')}" for case in root.iter("testcase")
              if case.find("failure") is not None]
    return {"tests": int(root.get("tests", 0)), "failures": int(root.get("failures", 0)),
            "errors": int(root.get("errors", 0)), "skipped": int(root.get("skipped", root.get("disabled", 0))),
            "failed": failed}


def read_runs(out):
    runs = {}
    for name in TRAIN_RUNS:
        result = read_json(os.path.join(out, "runs", name, "results.json"))
        if result is None:
            continue
        metrics = result.get("metrics", {})
        runs[name] = {"acc": metrics.get("acc"), "bwt": metrics.get("bwt"), "tasks": len(result.get("tasks", [])),
                      "seconds": result.get("total_seconds"), "backend": result.get("backend"),
                      "train_seconds": sum(stage.get("train_seconds", 0) for stage in result.get("stages", []))}
    return runs


def table_rows(bench, title_start):
    """{measure: row} of the first table of build/bench's JSON whose title starts with title_start."""
    for table in (bench or {}).get("tables", []):
        if table.get("title", "").startswith(title_start):
            return {row["measure"]: row for row in table.get("rows", [])}
    return {}


def timing(out):
    ours = {p: read_json(os.path.join(out, "bench", f"ours_{p}.json")) for p in PRECISIONS}
    pytorch = read_json(os.path.join(out, "bench", "pytorch.json"))
    rows = []
    for model in MODELS:
        for precision in PRECISIONS:
            overhead = table_rows(ours[precision], "Framework overhead").get(model)
            reference = next((r for r in (pytorch or {}).get("results", [])
                              if r.get("model") == model and r.get("precision") == precision), None)
            if overhead is None and reference is None:
                continue
            rows.append({"model": model, "precision": precision,
                         "framework": overhead["ours"] if overhead else None,
                         "bare_libtorch": overhead["reference"] if overhead else None,
                         "pytorch_eager": reference.get("eager_steps_per_second") if reference else None,
                         "pytorch_ddp": reference.get("ddp_steps_per_second") if reference else None})
    nccl = table_rows(ours["fp32"], "One-rank NCCL overhead")
    importance = table_rows(ours["fp32"], "ANPyC importance pass")
    return {"steps_per_second": rows,
            "nccl_overhead": [{"model": m, "nccl": r["ours"], "single": r["reference"]} for m, r in nccl.items()],
            "importance_pass": [{"model": m, "pass_seconds": r["ours"], "epoch_seconds": r["reference"]}
                                for m, r in importance.items()],
            "sources": {"ours_fp32": ours["fp32"] is not None, "ours_bf16": ours["bf16"] is not None,
                        "pytorch": pytorch is not None},
            "device": (ours["fp32"] or ours["bf16"] or {}).get("device")}


def verdict(value, threshold, higher_is_better=True):
    if value is None:
        return "not measured"
    return "met" if (value >= threshold if higher_is_better else value <= threshold) else "not met"


def targets(timed):
    result = []
    for row in timed["steps_per_second"]:
        ratio = (row["framework"] / row["pytorch_eager"]
                 if row["framework"] and row["pytorch_eager"] else None)
        result.append({"target": f"{row['model']} {row['precision']}: framework >= 95% of PyTorch eager steps/s",
                       "value": ratio, "shown": "n/a" if ratio is None else f"{100 * ratio:.1f}%",
                       "verdict": verdict(ratio, 0.95)})
    if not timed["nccl_overhead"]:
        result.append({"target": "one-rank NCCL overhead <= 3%", "value": None,
                       "shown": "n/a (no NCCL row: CPU mode or the fp32 bench failed)", "verdict": "not measured"})
    for row in timed["nccl_overhead"]:
        overhead = 1 - row["nccl"] / row["single"] if row["single"] else None
        result.append({"target": f"{row['model']}: one-rank NCCL overhead <= 3%", "value": overhead,
                       "shown": "n/a" if overhead is None else f"{100 * overhead:.1f}%",
                       "verdict": verdict(overhead, 0.03, higher_is_better=False)})
    for row in timed["importance_pass"]:
        ratio = row["pass_seconds"] / row["epoch_seconds"] if row["epoch_seconds"] else None
        result.append({"target": f"{row['model']}: ANPyC importance pass <= 1 epoch", "value": ratio,
                       "shown": "n/a" if ratio is None else f"{ratio:.2f} epochs",
                       "verdict": verdict(ratio, 1.0, higher_is_better=False)})
    speeds = {(r["model"], r["precision"]): r["framework"] for r in timed["steps_per_second"]}
    fp32, bf16 = speeds.get(("resnet18", "fp32")), speeds.get(("resnet18", "bf16"))
    speedup = bf16 / fp32 if fp32 and bf16 else None
    result.append({"target": "ResNet-18 bf16 >= 1.5x fp32 steps/s (framework)", "value": speedup,
                   "shown": "n/a" if speedup is None else f"{speedup:.2f}x", "verdict": verdict(speedup, 1.5)})
    return result


def number(value, digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}"


def percent(value):
    return "n/a" if value is None else f"{100 * value:.2f}"


def markdown(report):
    env, lines = report["env"] or {}, []
    lines.append(f"# GPU check report ({report['device']} mode)\n")
    lines.append(f"- Device: {env.get('gpu', 'cpu')}"
                 + (f" (compute capability {env['capability']}, {env.get('gpu_count')} visible)" if "capability" in env else ""))
    lines.append(f"- PyTorch {env.get('torch', '?')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn', 'n/a')}, "
                 f"NCCL {env.get('nccl', 'n/a')}, C++11 ABI {env.get('cxx11_abi', '?')}, Python {env.get('python', '?')}")
    lines.append(f"- Platform: {env.get('platform', '?')}")
    passed = sum(1 for p in report["phases"] if p["status"] == "ok")
    lines.append(f"- Phases: {passed} of {len(report['phases'])} passed; "
                 f"{sum(int(p['seconds'] or 0) for p in report['phases'])} s in phases\n")
    lines.append("## Phases\n\n| phase | status | seconds | note |\n|---|---|---:|---|")
    for p in report["phases"]:
        status = p["status"] if p["status"] == "ok" else f"**{p['status']}**"
        lines.append(f"| {p['phase']} | {status} | {p['seconds']} | {p['note'].replace('|', '/')} |")
    unit = report["unit"]
    lines.append("\n## Unit tests\n")
    if unit is None:
        lines.append("No unit.xml: the unit phase did not run to the end.")
    else:
        lines.append(f"{unit['tests']} tests, {unit['failures']} failures, {unit['errors']} errors"
                     + (": " + ", ".join(unit["failed"]) if unit["failed"] else ""))
    lines.append("\n## Training runs (split Fashion-MNIST)\n\n| run | tasks | ACC % | BWT % | train s | total s | backend |"
                 "\n|---|---:|---:|---:|---:|---:|---|")
    for name in TRAIN_RUNS:
        run = report["runs"].get(name)
        if run is None:
            lines.append(f"| {name} | | not run | | | | |")
            continue
        lines.append(f"| {name} | {run['tasks']} | {percent(run['acc'])} | {percent(run['bwt'])} | "
                     f"{number(run['train_seconds'])} | {number(run['seconds'])} | {run['backend']} |")
    timed = report["timing"]
    lines.append("\n## Steps/s (one rank, same model, batch and precision)\n\n"
                 "| model | precision | framework | bare LibTorch | PyTorch eager | PyTorch DDP (1 rank) | framework / eager |"
                 "\n|---|---|---:|---:|---:|---:|---:|")
    for row in timed["steps_per_second"]:
        ratio = row["framework"] / row["pytorch_eager"] if row["framework"] and row["pytorch_eager"] else None
        lines.append(f"| {row['model']} | {row['precision']} | {number(row['framework'])} | {number(row['bare_libtorch'])} | "
                     f"{number(row['pytorch_eager'])} | {number(row['pytorch_ddp'])} | {number(ratio, 3)} |")
    if not timed["steps_per_second"]:
        lines.append("| (no timing: the bench phases did not run to the end) | | | | | | |")
    for row in timed["nccl_overhead"]:
        lines.append(f"\nOne-rank NCCL ({row['model']}): {number(row['nccl'])} steps/s over NCCL, "
                     f"{number(row['single'])} over the single-process communicator.")
    for row in timed["importance_pass"]:
        lines.append(f"\nANPyC importance pass ({row['model']}): {number(row['pass_seconds'], 3)} s, "
                     f"one training epoch over the same data {number(row['epoch_seconds'], 3)} s.")
    lines.append("\n## Targets\n\n| target | measured | verdict |\n|---|---:|---|")
    for t in report["targets"]:
        shown = t["verdict"] if t["verdict"] == "met" else f"**{t['verdict']}**"
        lines.append(f"| {t['target']} | {t['shown']} | {shown} |")
    lines.append("\nNot covered here: more than one rank over NCCL (the device machine has one GPU and the "
                 "dependency prefix has no Open MPI), and the image-folder loader (no OpenCV in the prefix). "
                 "See docs/gpu.md.")
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        raise SystemExit("usage: gpu_report.py OUT  (the --out folder of scripts/gpu_check.sh)")
    out = sys.argv[1]
    phases = read_phases(out)
    timed = timing(out)
    report = {"device": os.environ.get("DEVICE", "cuda"), "env": read_json(os.path.join(out, "env.json")),
              "phases": phases, "unit": read_unit(out), "runs": read_runs(out), "timing": timed,
              "targets": targets(timed)}
    with open(os.path.join(out, "gpu_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out, "gpu_report.md"), "w") as f:
        f.write(markdown(report))


if __name__ == "__main__":
    main()
