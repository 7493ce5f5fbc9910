#pragma once
// Masks for neural pruning (ANPyC, DESIGN.md 4.2; the released code's
// get_mask_matrix1/2): which weights a task uses and which stay free for
// later tasks.
#include <string>
#include <vector>

#include "algorithms/parameter_tensors.h"

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

// One line per tensor: "name: used U, free F (x% free)", and a total line.
std::string describe_masks(const NamedTensors& masks);

}  // namespace clx
