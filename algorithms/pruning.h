#pragma once
// Masks for neural pruning (ANPyC, DESIGN.md 4.2; the released code's
// get_mask_matrix1/2): which weights a task uses and which stay free for
// later tasks; and the record of compression pruning (the paper's Table IV:
// one task, pruned in rounds).
#include <optional>
#include <string>
#include <vector>

#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

// The pruning budget after task `task` (1-based) in whole percent:
// P_1 = first_percent, P_t = floor(decay * P_{t-1}) (50, 40, 32, 25, 20, 16,
// 12, 9, 7 for 50 and 0.8).
int pruning_budget_percent(int task, int first_percent, double decay);

// The pruning steps after task `task` in whole percent: step, 2 step, ... up
// to the first multiple of step that reaches P_t (none when P_t = 0).
std::vector<int> pruning_steps_percent(int task, int first_percent, double decay, int step_percent);

// The `percent`-th percentile of `values` (flattened, at least one element)
// with linear interpolation between the closest ranks, as numpy.percentile's
// default: index q (n - 1) of the sorted values, q = percent / 100, computed
// in double precision with numpy's interpolation formula.
double percentile(const torch::Tensor& values, double percent);

// The weights one pruning step frees (bool tensors) among `candidates` (bool,
// true = may be freed), from this step's importance `omega`:
//  - first task: every candidate with omega == 0 or omega below the
//    percentile of the candidates' omega;
//  - later tasks: every candidate with omega <= that percentile (ties freed).
// The percentile is per tensor, or over every tensor's candidates pooled
// (`global`). Comparisons are made in double precision.
NamedTensors weights_to_free(const NamedTensors& omega, const NamedTensors& candidates, double percent, bool first_task,
                             bool global);

// Output units of a layer with nothing used feeding them: every weight of
// the unit's row of `<layer>.weight` (dim 0 = output units, at least 2-D)
// free and, where `<layer>.bias` is among the masks, its bias free too.
// Freed weights are zero, so such a unit's pre-activation is exactly 0 after
// pruning, and a ReLU passes no gradient at 0: no later task can train it
// back (the unit is lost for the rest of the sequence).
struct UnreachableUnits {
  std::string layer;  // "trunk.4" for trunk.4.weight
  int64_t units = 0;  // output units of the layer
  int64_t unreachable = 0;
};
std::vector<UnreachableUnits> unreachable_units(const NamedTensors& masks);

// One line per tensor: "name: used U, free F (x% free)"; one line per layer
// with units that unreachable_units counts; and a total line.
std::string describe_masks(const NamedTensors& masks);

// ---- compression pruning (anpyc.prune_schedule = compression)

// "55, 80, 91.5" -> {55, 80, 91.5}: the percent of the weights freed after
// each round, cumulative. Throws clx::Error naming anpyc.compression_schedule
// for an item that is no number and for any schedule that
// check_compression_schedule refuses.
std::vector<double> parse_compression_schedule(const std::string& text);
// Throws clx::Error naming anpyc.compression_schedule unless `percents` holds
// at least one round, every percent in (0, 100), each above the one before.
void check_compression_schedule(const std::vector<double>& percents);

// total / remaining: how many times smaller the kept part is (infinity when nothing remains).
double compression_ratio(int64_t total, int64_t remaining);

// One compression round: what is left of each shared tensor and the accuracy
// on the evaluation split. Round 0 is the trained network before pruning.
struct CompressionRound {
  double schedule_percent = 0.0;   // the schedule's percent freed by this round (0 for round 0)
  std::vector<int64_t> remaining;  // per shared tensor: weights still used
  std::optional<double> accuracy_after_pruning;  // before retraining (none for round 0)
  double accuracy = 0.0;                         // after retraining
};

// The rounds as the table "compression": per round one row per shared tensor
// (`names`, sizes `totals`) and one row "network" (their sums), with columns
// round, schedule_percent, tensor, total, remaining, remaining_percent,
// compression (total / remaining), accuracy_after_pruning, accuracy.
ResultTable compression_table(const std::vector<std::string>& names, const std::vector<int64_t>& totals,
                              const std::vector<CompressionRound>& rounds);

// The rounds for the log, as the paper's Table IV: a row per shared tensor
// (percent left), the network's remaining count, compression ratio and
// accuracies, a column per round. `unpruned` parameters (the task's head,
// never pruned) give one more line: the ratio with them counted (none when 0).
std::string describe_compression(const std::vector<std::string>& names, const std::vector<int64_t>& totals,
                                 const std::vector<CompressionRound>& rounds, int64_t unpruned);

}  // namespace clx
