#include "algorithms/parameter_tensors.h"

#include "runtime/error.h"

namespace clx {

NamedTensors snapshot_shared(const ContinualNet& model) {
  NamedTensors copies;
  for (const auto& [name, parameter] : model.named_shared_parameters())
    copies.emplace_back(name, parameter.detach().clone());
  return copies;
}

NamedTensors zeros_like_shared(const ContinualNet& model) {
  NamedTensors zeros;
  for (const auto& [name, parameter] : model.named_shared_parameters())
    zeros.emplace_back(name, torch::zeros_like(parameter, torch::MemoryFormat::Contiguous).detach());
  return zeros;
}

NamedTensors join_sets(std::initializer_list<std::pair<const char*, const NamedTensors*>> sets) {
  NamedTensors all;
  for (const auto& [prefix, set] : sets)
    for (const auto& [name, tensor] : *set) all.emplace_back(std::string(prefix) + "." + name, tensor);
  return all;
}

void split_sets(const NamedTensors& state, std::initializer_list<std::pair<const char*, NamedTensors*>> sets) {
  for (const auto& [prefix, set] : sets) *set = with_prefix(state, prefix);
}

void accumulate_into(NamedTensors& total, const NamedTensors& add, Accumulation mode) {
  if (total.size() != add.size()) throw Error("accumulate: tensor sets of different sizes");
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < total.size(); ++k) {
    if (mode == Accumulation::Sum) total[k].second.add_(add[k].second);
    else total[k].second = torch::maximum(total[k].second, add[k].second);
  }
}

void add_quadratic_pull(const ContinualNet& model, const QuadraticTerm& term) {
  torch::NoGradGuard no_grad;
  const auto parameters = model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) {
    const torch::Tensor& theta = parameters[k].second;
    if (!theta.grad().defined()) continue;  // not trained in this stage
    torch::Tensor grad = theta.grad();
    grad.add_(term.importance[k].second * (theta - term.anchor[k].second), term.coefficient);
  }
}

void apply_proximal_pull(const ContinualNet& model, const std::vector<QuadraticTerm>& terms, double lr) {
  if (terms.empty()) return;
  if (!(lr > 0.0)) throw Error("train.penalty_step=proximal: the learning rate of this step is not positive");
  torch::NoGradGuard no_grad;
  const auto parameters = model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) {
    torch::Tensor theta = parameters[k].second;
    if (!theta.grad().defined()) continue;  // not trained in this stage
    torch::Tensor pull = terms[0].importance[k].second * (lr * terms[0].coefficient);  // c of the first term
    torch::Tensor numerator = theta + pull * terms[0].anchor[k].second;
    for (size_t j = 1; j < terms.size(); ++j) {
      const torch::Tensor c = terms[j].importance[k].second * (lr * terms[j].coefficient);
      numerator.addcmul_(c, terms[j].anchor[k].second);
      pull.add_(c);
    }
    theta.copy_(numerator.div_(pull.add_(1.0)));
  }
}

void penalty_after_backward(PenaltyStep step, const ContinualNet& model, const std::vector<QuadraticTerm>& terms) {
  if (step != PenaltyStep::Explicit) return;
  for (const QuadraticTerm& term : terms) add_quadratic_pull(model, term);
}

void penalty_after_step(PenaltyStep step, const ContinualNet& model, const std::vector<QuadraticTerm>& terms,
                        double lr) {
  if (step == PenaltyStep::Proximal) apply_proximal_pull(model, terms, lr);
}

double quadratic_energy(const ContinualNet& model, const NamedTensors& importance, const NamedTensors& anchor) {
  torch::NoGradGuard no_grad;
  const auto parameters = model.named_shared_parameters();
  torch::Tensor energy;  // on the parameters' device: one copy to the host at the end
  for (size_t k = 0; k < parameters.size(); ++k) {
    const torch::Tensor term = (importance[k].second.to(torch::kFloat64) *
                                (parameters[k].second - anchor[k].second).to(torch::kFloat64).pow(2))
                                   .sum();
    energy = energy.defined() ? energy + term : term;
  }
  return energy.defined() ? energy.item<double>() : 0.0;
}

}  // namespace clx
