#pragma once
// Per-parameter tensors (importance, anchors, masks, ...) of the shared trunk,
// kept by name in the model's parameter order. Every algorithm keeps its
// state in these, so checkpoints and fingerprints treat all alike.
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "runtime/continual_net.h"
#include "runtime/named_tensors.h"

namespace clx {

// Detached copies of the shared parameters (a snapshot theta*).
NamedTensors snapshot_shared(const ContinualNet& model);
// Zeros shaped like the shared parameters.
NamedTensors zeros_like_shared(const ContinualNet& model);
// Strategy::state() from a strategy's named sets: every entry of each set
// under "<prefix>.". split_sets is the inverse, for load_state: each set is
// replaced by the entries of `state` under its prefix.
NamedTensors join_sets(std::initializer_list<std::pair<const char*, const NamedTensors*>> sets);
void split_sets(const NamedTensors& state, std::initializer_list<std::pair<const char*, NamedTensors*>> sets);
// total = total + add (sum) or max(total, add), element-wise and in place.
void accumulate_into(NamedTensors& total, const NamedTensors& add, const std::string& mode);

// grad += coefficient * importance * (theta - anchor) for every shared
// parameter, in place and outside autograd. Applied after the gradient
// all-reduce, it is identical on every rank, and it equals the gradient of
// (coefficient / 2) * sum importance * (theta - anchor)^2.
void add_quadratic_pull(const ContinualNet& model, const NamedTensors& importance, const NamedTensors& anchor,
                        double coefficient);
// sum importance * (theta - anchor)^2 over every shared parameter.
double quadratic_energy(const ContinualNet& model, const NamedTensors& importance, const NamedTensors& anchor);

}  // namespace clx
