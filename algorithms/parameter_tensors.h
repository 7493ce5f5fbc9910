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
// Eq. 8: Omega(1:t) = Omega(1:t-1) + Omega_t (Sum) or the element-wise maximum (Max).
enum class Accumulation { Sum, Max };
// total = total + add or max(total, add), element-wise and in place.
void accumulate_into(NamedTensors& total, const NamedTensors& add, Accumulation mode);

// How a quadratic penalty is applied (train.penalty_step, DESIGN.md 4.2):
// Explicit adds its gradient to the all-reduced gradient (after_backward);
// Proximal moves the weights after the optimizer step (after_step) by the
// closed-form minimiser, which is stable at any strength.
enum class PenaltyStep { Explicit, Proximal };

// One term (coefficient / 2) * sum importance * (theta - anchor)^2 of a
// quadratic penalty over the shared parameters; its gradient is
// coefficient * importance * (theta - anchor). ANPyC, MAS: coefficient
// 2 lambda; SI: 2 c; EWC: lambda per Fisher.
struct QuadraticTerm {
  const NamedTensors& importance;
  const NamedTensors& anchor;
  double coefficient;
};

// grad += coefficient * importance * (theta - anchor) for every shared
// parameter with a gradient (parameters not trained in this stage have none),
// in place and outside autograd. Applied after the gradient all-reduce, it is
// identical on every rank.
void add_quadratic_pull(const ContinualNet& model, const QuadraticTerm& term);

// theta <- (theta + lr sum_k a_k anchor_k) / (1 + lr sum_k a_k) with
// a_k = coefficient_k * importance_k, element-wise, for every shared parameter
// with a gradient: after a plain SGD step this is the exact minimiser of
// |theta - theta_sgd|^2 / (2 lr) + the penalty. For one term it is
// theta <- (theta + c anchor) / (1 + c), c = lr * coefficient * importance.
void apply_proximal_pull(const ContinualNet& model, const std::vector<QuadraticTerm>& terms, double lr);

// The explicit step in after_backward, the proximal one in after_step: each
// call does nothing under the other step, so a strategy calls both.
void penalty_after_backward(PenaltyStep step, const ContinualNet& model, const std::vector<QuadraticTerm>& terms);
void penalty_after_step(PenaltyStep step, const ContinualNet& model, const std::vector<QuadraticTerm>& terms, double lr);

// sum importance * (theta - anchor)^2 over every shared parameter.
double quadratic_energy(const ContinualNet& model, const NamedTensors& importance, const NamedTensors& anchor);

}  // namespace clx
