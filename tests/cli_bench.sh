#!/usr/bin/env bash
# The bench executable as a user runs it: --help, bad options, and a short run
# of the suites on 2 ranks whose tables and JSON must hold real, positive
# figures for every row. Speed itself is not asserted here (docs/benchmarks.md).
# Needs BENCH, MPIRUN, SOURCE_DIR.
source "$(dirname "$0")/cli_lib.sh"

if "$BENCH" --help | grep -q "Usage: mpirun -np 2 bench"; then pass "bench --help"; else fail "bench --help"; fi
expect_failure "unknown suite" "--suite: 'fast' is not one of" "$BENCH" --suite fast
expect_failure "unknown model" "--models: 'lenet' is not one of" "$BENCH" --models lenet
expect_failure "bad option value" "--batch" "$BENCH" --batch x
expect_failure "unknown device" "--device: 'tpu' is not one of cpu, cuda" "$BENCH" --device tpu
expect_failure "unknown precision" "--precision: 'fp16' is not one of fp32, bf16" "$BENCH" --precision fp16
expect_failure "width not positive" "--width: must be a positive channel multiplier" "$BENCH" --width 0
if ! command -v nvidia-smi >/dev/null; then
  expect_failure "cuda without a GPU" "--device cuda: no CUDA device is visible" "$BENCH" --device cuda
fi
expect_failure "missing DDP results" "--ddp-json: cannot open '$WORK/none.json'" \
  "${MPI[@]}" -np 2 "$BENCH" --suite overhead --models mlp --mlp-steps 2 --repeats 1 --ddp-json "$WORK/none.json"

if timeout 300 "${MPI[@]}" -np 2 "$BENCH" --suite overhead,scaling,allreduce,passes --models mlp --mlp-steps 8 \
     --repeats 1 --json "$WORK/bench.json" >"$WORK/bench.txt" 2>&1; then
  pass "2-rank short run"
else
  fail "2-rank short run"; tail -20 "$WORK/bench.txt"
fi
# Every table the suites promise, each row with positive figures on both sides.
if python3 - "$WORK/bench.json" <<'PY'
import json, sys
tables = json.load(open(sys.argv[1]))["tables"]
titles = " | ".join(t["title"] for t in tables)
for expected in ["Framework overhead", "Scaling", "All-reduce overlap", "All-reduce bus bandwidth",
                 "ANPyC importance pass", "EWC per-sample Fisher"]:
    assert expected in titles, f"no '{expected}' table in: {titles}"
for table in tables:
    assert table["rows"], f"empty table: {table['title']}"
    for row in table["rows"]:
        assert row["ours"] > 0 and row["reference"] > 0, f"{table['title']}: {row}"
        assert abs(row["ratio"] - row["ours"] / row["reference"]) < 1e-9, row
sizes = [r["measure"].split()[0] for t in tables if "bus bandwidth" in t["title"] for r in t["rows"]]
assert {"1", "25", "100"} <= set(sizes), sizes
PY
then pass "JSON tables complete"; else fail "JSON tables complete"; fi
if grep -q "| mlp | .* steps/s | .* steps/s |" "$WORK/bench.txt"; then pass "Markdown table printed"; else fail "Markdown table printed"; fi
# The loader suite writes its own image tree to --scratch and removes it afterwards.
if timeout 300 "$BENCH" --suite loader --batch 4 --repeats 1 --scratch "$WORK" --json "$WORK/loader.json" \
     >"$WORK/loader.txt" 2>&1 && python3 - "$WORK/loader.json" <<'PY'
import json, sys
(table,) = json.load(open(sys.argv[1]))["tables"]
assert table["title"].startswith("Image-folder loader against one training rank"), table["title"]
measures = [row["measure"] for row in table["rows"]]
assert len(measures) == 4 and "1 worker(s)" in measures[1] and "2 worker(s)" in measures[2], measures
assert all(row["ours"] > 0 and row["reference"] > 0 for row in table["rows"]), table["rows"]
PY
then
  [ -z "$(ls "$WORK" | grep clx-bench-images)" ] && pass "loader suite: 4 rows, tree removed" || fail "loader suite left its tree"
else
  fail "loader suite"; tail -20 "$WORK/loader.txt"
fi
# The generation suite on 2 ranks: the VAE's and the GAN's steps by the trainer and by hand, FID against
# an epoch (rank 0 alone), and both generators' 2-rank scaling; its feature files go to --scratch and are
# removed afterwards.
if timeout 300 "${MPI[@]}" -np 2 "$BENCH" --suite generation --batch 16 --conv-steps 1 --repeats 1 --scratch "$WORK" \
     --json "$WORK/generation.json" >"$WORK/generation.txt" 2>&1 && python3 - "$WORK/generation.json" <<'PY'
import json, sys
speed, fid, scaling = json.load(open(sys.argv[1]))["tables"]
assert speed["title"].startswith("Generator training steps: one rank"), speed["title"]
assert fid["title"].startswith("FID of 10,000 generated images vs one generator training epoch"), fid["title"]
assert scaling["title"].startswith("Generator scaling: 2 ranks x 1 thread vs 1 rank, batch 16 per rank"), scaling["title"]
assert [row["measure"] for row in speed["rows"]] == ["vae", "gan (WGAN-GP critic step + generator step)"], speed["rows"]
assert [row["measure"] for row in fid["rows"]] == ["vae", "gan"], fid["rows"]
assert [row["measure"] for row in scaling["rows"]] == ["vae", "gan"], scaling["rows"]
for row in speed["rows"] + fid["rows"] + scaling["rows"]:
    assert row["ours"] > 0 and row["reference"] > 0, row
PY
then
  [ -z "$(ls "$WORK" | grep clx_bench_fid)" ] && pass "generation suite on 2 ranks: 3 tables, feature files removed" \
    || fail "generation suite left a feature file"
else
  fail "generation suite"; tail -20 "$WORK/generation.txt"
fi
finish
