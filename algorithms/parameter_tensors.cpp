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

NamedTensors prefixed(const std::string& prefix, const NamedTensors& tensors) {
  NamedTensors named;
  for (const auto& [name, tensor] : tensors) named.emplace_back(prefix + "." + name, tensor);
  return named;
}

NamedTensors restore_shared(const ContinualNet& model, const NamedTensors& state, const std::string& prefix) {
  const NamedTensors saved = with_prefix(state, prefix);
  const auto parameters = model.named_shared_parameters();
  if (saved.size() != parameters.size())
    throw Error("strategy state '" + prefix + "' holds " + std::to_string(saved.size()) + " tensors, the model has " +
                std::to_string(parameters.size()) + " shared parameters");
  NamedTensors restored;
  for (size_t k = 0; k < parameters.size(); ++k) {
    if (saved[k].first != parameters[k].first || saved[k].second.sizes() != parameters[k].second.sizes())
      throw Error("strategy state '" + prefix + "." + saved[k].first + "' does not match shared parameter '" +
                  parameters[k].first + "'");
    restored.emplace_back(saved[k].first, saved[k].second.detach().to(torch::kCPU).contiguous().clone());
  }
  return restored;
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
