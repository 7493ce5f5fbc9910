#pragma once
// Masks for neural pruning (ANPyC, DESIGN.md 4.2): which weights a task uses
// and which stay free for later tasks.
#include <string>
#include <vector>

#include "algorithms/parameter_tensors.h"

namespace clx {

// The pruning fractions after task `task` (1-based): budget
// P_t = first_budget * decay^(t-1), then p = step, 2*step, ... while p <= P_t;
// a single step of `step` when P_t < step.
std::vector<double> pruning_fractions(int task, double first_budget, double decay, double step);

// Among the `candidates` (bool tensors, true = may be freed), marks as free
// the `fraction` of candidates with the lowest `score` (rounded to the nearest
// count), per tensor or, with `global`, pooled over every tensor. Ties go to
// the lower position, so the choice is deterministic. Returns bool tensors.
NamedTensors lowest_scoring(const NamedTensors& score, const NamedTensors& candidates, double fraction, bool global);

// One line per tensor: "name: used U, free F (x% free)", and a total line.
std::string describe_masks(const NamedTensors& masks, const NamedTensors& prunable);

}  // namespace clx
