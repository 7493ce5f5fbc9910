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

void accumulate_into(NamedTensors& total, const NamedTensors& add, const std::string& mode) {
  if (total.size() != add.size()) throw Error("accumulate: tensor sets of different sizes");
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < total.size(); ++k) {
    if (mode == "sum") total[k].second.add_(add[k].second);
    else if (mode == "max") total[k].second = torch::maximum(total[k].second, add[k].second);
    else throw Error("accumulation mode '" + mode + "' is not one of sum, max");
  }
}

void add_quadratic_pull(const ContinualNet& model, const NamedTensors& importance, const NamedTensors& anchor,
                        double coefficient) {
  torch::NoGradGuard no_grad;
  const auto parameters = model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) {
    const torch::Tensor& theta = parameters[k].second;
    if (!theta.grad().defined()) continue;  // not trained in this stage
    torch::Tensor grad = theta.grad();
    grad.add_(importance[k].second * (theta - anchor[k].second), coefficient);
  }
}

double quadratic_energy(const ContinualNet& model, const NamedTensors& importance, const NamedTensors& anchor) {
  torch::NoGradGuard no_grad;
  double energy = 0.0;
  const auto parameters = model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k)
    energy += (importance[k].second * (parameters[k].second - anchor[k].second).pow(2)).sum().item<double>();
  return energy;
}

}  // namespace clx
