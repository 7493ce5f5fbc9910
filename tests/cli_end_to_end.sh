# End-to-end runs of `train` on real Fashion-MNIST (small subsets so the
# suite stays fast): split and permuted streams, 1 and 2 ranks, joint and the
# paper's FWT, and the files a run leaves behind.
source "$(dirname "$0")/cli_lib.sh"
SMALL=(--data.train_samples_per_task=1000 --data.test_samples_per_task=500 --train.epochs=2 --train.lr=0.05 --run.progress_seconds=0.000001)

run_ok() {  # run_ok NAME COMMAND...
  local name=$1 log=${1// /_}; shift
  if timeout 300 "$@" > "$WORK/$log.out" 2> "$WORK/$log.err"; then pass "$name"; else
    fail "$name (exit $?)"; tail -20 "$WORK/$log.err"; fi
}

# Accuracy matrices equal within 0.5 percentage points (float summation order differs across world sizes).
same_matrix() {  # same_matrix NAME A.csv B.csv
  if paste -d, "$2" "$3" | awk -F, 'NR>1 { n=NF/2; for (i=2;i<=n;i++) { d=$i-$(i+n); if (d<0) d=-d; if (d>0.005) bad=1 } } END { exit bad }'; then
    pass "$1"; else fail "$1"; paste -d'|' "$2" "$3"; fi
}

run_ok "split 1 rank" "$TRAIN" --config "$SOURCE_DIR/configs/split_fmnist.ini" "${SMALL[@]}" --output "$WORK/split1"
run_ok "split 2 ranks" "${MPI[@]}" -np 2 "$TRAIN" --config "$SOURCE_DIR/configs/split_fmnist.ini" "${SMALL[@]}" --output "$WORK/split2"
same_matrix "split: 2 ranks give the 1-rank accuracy matrix" "$WORK/split1/accuracy_matrix.csv" "$WORK/split2/accuracy_matrix.csv"

for file in results.json accuracy_matrix.csv metrics.csv config.ini train.log; do
  [ -s "$WORK/split2/$file" ] && pass "run folder has $file" || fail "run folder lacks $file"
done
[ "$(wc -l < "$WORK/split2/accuracy_matrix.csv")" -eq 7 ] && pass "accuracy matrix: header, initial, 5 stages" || fail "accuracy matrix rows"
grep -q '"world_size": 2' "$WORK/split2/results.json" && pass "results.json records 2 ranks" || fail "world_size in results.json"
grep -q "ACC .* BWT .* FWT(paper) .* FWT(GEM)" "$WORK/split_2_ranks.out" && pass "final table printed" || fail "final table"
grep -q "task 3 epoch 1/2 .*left" "$WORK/split_2_ranks.out" && pass "plain progress lines when not a terminal" || fail "progress lines"
grep -q "task 5 epoch 2/2: loss" "$WORK/split2/train.log" && pass "train.log has per-epoch lines" || fail "train.log content"

# The effective config of a run reproduces it.
run_ok "rerun from the run's config.ini" "$TRAIN" --config "$WORK/split1/config.ini" --output "$WORK/split1-again"
cmp -s "$WORK/split1/accuracy_matrix.csv" "$WORK/split1-again/accuracy_matrix.csv" && pass "config.ini reproduces the run bit for bit" \
  || fail "config.ini rerun differs"

# Joint, then fine-tuning with the joint accuracies as m_i of the paper's FWT.
run_ok "joint 2 ranks" "${MPI[@]}" -np 2 "$TRAIN" --config "$SOURCE_DIR/configs/split_fmnist.ini" "${SMALL[@]}" \
  --train.algorithm=joint --output "$WORK/joint"
[ "$(wc -l < "$WORK/joint/accuracy_matrix.csv")" -eq 3 ] && pass "joint: one stage over all tasks" || fail "joint rows"
run_ok "finetune with joint results" "$TRAIN" --config "$SOURCE_DIR/configs/split_fmnist.ini" "${SMALL[@]}" \
  --metrics.joint_results="$WORK/joint/results.json" --output "$WORK/fwt"
grep -q '"fwt_paper": -\?[0-9]' "$WORK/fwt/results.json" && pass "FWT(paper) computed from the joint run" || fail "fwt_paper"

run_ok "permuted 2 ranks" "${MPI[@]}" -np 2 "$TRAIN" --config "$SOURCE_DIR/configs/permuted_fmnist.ini" "${SMALL[@]}" \
  --data.tasks=3 --output "$WORK/perm2"
run_ok "permuted 1 rank" "$TRAIN" --config "$SOURCE_DIR/configs/permuted_fmnist.ini" "${SMALL[@]}" --data.tasks=3 --output "$WORK/perm1"
same_matrix "permuted: 2 ranks give the 1-rank accuracy matrix" "$WORK/perm1/accuracy_matrix.csv" "$WORK/perm2/accuracy_matrix.csv"
run_ok "sgd single head" "$TRAIN" --config "$SOURCE_DIR/configs/split_fmnist.ini" "${SMALL[@]}" --train.algorithm=sgd --output "$WORK/sgd"
grep -q "strategy sgd" "$WORK/sgd/train.log" && pass "sgd run logged" || fail "sgd log"

# report: mean ± std over runs of the same method (two identical finetune runs: std 0).
if "$REPORT" "$WORK/split1" "$WORK/split2" "$WORK/joint" --csv "$WORK/table.csv" > "$WORK/table.md" 2> "$WORK/report.err"; then
  acc=$(awk -F, '$1 == "acc" { printf "%.2f", 100 * $2 }' "$WORK/split1/metrics.csv")
  grep -q "^| finetune | 2 | .* | $acc ± 0.00 |" "$WORK/table.md" && pass "report: finetune mean ± std over 2 runs" \
    || { fail "report table"; cat "$WORK/table.md"; }
  grep -q "^| joint | 1 | n/a | n/a | n/a |" "$WORK/table.md" && pass "report: joint has ACC only" || fail "report joint row"
  grep -q "^finetune,2," "$WORK/table.csv" && pass "report: CSV written" || fail "report CSV"
else
  fail "report exited non-zero"; cat "$WORK/report.err"
fi
# report --plots: PNG files (checked by their signature) for each method and the per-task curves.
if "$REPORT" "$WORK/split1" "$WORK/split2" "$WORK/joint" --plots "$WORK/plots" > /dev/null 2> "$WORK/plots.err"; then
  for png in finetune_accuracy_matrix.png joint_accuracy_matrix.png acc_after_each_task.png bwt_after_each_task.png; do
    [ "$(head -c 8 "$WORK/plots/$png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] \
      && pass "report --plots wrote $png" || fail "report --plots: $png missing or not a PNG"
  done
else
  fail "report --plots exited non-zero"; cat "$WORK/plots.err"
fi
"$REPORT" /nonexistent 2> "$WORK/report.err"; [ $? -ne 0 ] && grep -q "/nonexistent: no such run folder or results.json" "$WORK/report.err" \
  && pass "report: missing run folder is a clear error" || fail "report missing folder"

finish
