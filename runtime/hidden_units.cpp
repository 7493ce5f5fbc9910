#include "runtime/hidden_units.h"

#include "runtime/error.h"

namespace clx {
namespace {

// [units] -> [1, units, 1, ...] to broadcast over an activation of `dims` dimensions.
torch::Tensor along_dimension_1(const torch::Tensor& values, int64_t dims) {
  std::vector<int64_t> shape(static_cast<size_t>(dims), 1);
  shape[1] = values.size(0);
  return values.view(shape);
}

}  // namespace

GatedReLUImpl::GatedReLUImpl(int64_t units) : units_(units) {}

torch::Tensor GatedReLUImpl::forward(const torch::Tensor& input) {
  torch::Tensor output = torch::relu(input);
  if (keep_) kept_ = output;
  if (gate_.defined()) output = output * along_dimension_1(gate_, output.dim()).to(output.dtype());
  return output;
}

void GatedReLUImpl::set_gate(const torch::Tensor& gate) {
  if (gate.defined() && (gate.dim() != 1 || gate.size(0) != units_))
    throw Error("a gate of shape " + std::to_string(gate.dim() == 1 ? gate.size(0) : -1) + " for a layer of " +
                std::to_string(units_) + " units");
  gate_ = gate;
}

void GatedReLUImpl::keep_activations(bool keep) {
  keep_ = keep;
  if (!keep) kept_ = torch::Tensor();
}

int HiddenUnits::add_layer(const std::string& name, const GatedReLU& layer) {
  names.push_back(name);
  layers.push_back(layer);
  return static_cast<int>(layers.size()) - 1;
}

void HiddenUnits::connect(const std::string& prefix, const torch::nn::Module& module, int out, int in,
                          int64_t in_repeat) {
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    parameters.push_back(ParameterUnits{prefix + "." + item.key(), out, in, in_repeat});
}

const ParameterUnits* HiddenUnits::wiring(const std::string& parameter) const {
  for (const auto& item : parameters)
    if (item.parameter == parameter) return &item;
  return nullptr;
}

void HiddenUnits::require_wired(const std::vector<std::pair<std::string, torch::Tensor>>& shared_parameters,
                                const std::string& algorithm, const std::string& models) const {
  if (empty())
    throw Error("train.algorithm=" + algorithm + " needs a model that exposes its hidden units (" + models + ")");
  for (const auto& item : shared_parameters)
    if (wiring(item.first) == nullptr)
      throw Error("train.algorithm=" + algorithm + ": the model does not say which units " + item.first +
                  " connects");
}

void HiddenUnits::clear_gates() const {
  for (const auto& layer : layers) layer.ptr()->set_gate(torch::Tensor());
}

torch::Tensor output_units_view(const ParameterUnits& wiring, const torch::Tensor& parameter,
                                const std::vector<torch::Tensor>& per_layer) {
  const torch::Tensor& values = per_layer.at(static_cast<size_t>(wiring.out));
  if (parameter.size(0) != values.size(0))
    throw Error(wiring.parameter + ": " + std::to_string(parameter.size(0)) + " outputs, but its hidden layer has " +
                std::to_string(values.size(0)) + " units");
  std::vector<int64_t> shape(static_cast<size_t>(parameter.dim()), 1);
  shape[0] = values.size(0);
  return values.view(shape);
}

torch::Tensor input_units_view(const ParameterUnits& wiring, const torch::Tensor& parameter,
                               const std::vector<torch::Tensor>& per_layer) {
  if (wiring.in < 0 || parameter.dim() < 2) return {};
  torch::Tensor values = per_layer.at(static_cast<size_t>(wiring.in));
  if (wiring.in_repeat > 1) values = values.repeat_interleave(wiring.in_repeat);
  if (parameter.size(1) != values.size(0))
    throw Error(wiring.parameter + ": " + std::to_string(parameter.size(1)) + " inputs, but its input layer gives " +
                std::to_string(values.size(0)));
  std::vector<int64_t> shape(static_cast<size_t>(parameter.dim()), 1);
  shape[1] = values.size(0);
  return values.view(shape);
}

}  // namespace clx
