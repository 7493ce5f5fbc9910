#include "models/multi_head_model.h"

#include <sstream>

#include "runtime/error.h"

namespace clx {

std::vector<int64_t> parse_layer_sizes(const std::string& text, const std::string& option) {
  std::vector<int64_t> sizes;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    const auto begin = item.find_first_not_of(" \t"), end = item.find_last_not_of(" \t");
    if (begin == std::string::npos) continue;
    item = item.substr(begin, end - begin + 1);
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || value <= 0)
      throw Error(option + ": '" + item + "' is not a positive layer size (expected e.g. 512,256)");
    sizes.push_back(value);
  }
  return sizes;
}

MultiHeadModelImpl::MultiHeadModelImpl(torch::nn::Sequential trunk, int64_t feature_size,
                                       const std::vector<int64_t>& head_sizes) {
  trunk_ = register_module("trunk", std::move(trunk));
  torch::nn::ModuleList heads;
  for (int64_t size : head_sizes) {
    heads_.push_back(torch::nn::Linear(feature_size, size));
    heads->push_back(heads_.back());
  }
  register_module("heads", heads);
}

torch::Tensor MultiHeadModelImpl::features(const torch::Tensor& inputs) { return trunk_->forward(inputs); }

torch::Tensor MultiHeadModelImpl::head_forward(const torch::Tensor& features, int64_t head) {
  return heads_.at(static_cast<size_t>(head))->forward(features);
}

std::vector<torch::Tensor> MultiHeadModelImpl::head_parameters(int64_t head) const {
  return heads_.at(static_cast<size_t>(head))->parameters();
}

std::vector<std::pair<std::string, torch::Tensor>> MultiHeadModelImpl::named_shared_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& item : trunk_->named_parameters()) named.emplace_back("trunk." + item.key(), item.value());
  return named;
}

MultiHeadModel make_mlp(const std::vector<int64_t>& input_shape, const MlpConfig& config,
                        const std::vector<int64_t>& head_sizes) {
  if (!(config.dropout >= 0.0 && config.dropout < 1.0))
    throw Error("model.dropout: must be in [0, 1), got " + std::to_string(config.dropout));
  torch::nn::Sequential trunk;
  trunk->push_back(torch::nn::Flatten());
  int64_t width = 1;
  for (int64_t dim : input_shape) width *= dim;
  HiddenUnits units;
  int previous = -1;
  for (int64_t hidden : config.hidden) {
    const std::string linear_name = "trunk." + std::to_string(trunk->size());
    const torch::nn::Linear linear(width, hidden);
    trunk->push_back(linear);
    const std::string relu_name = "trunk." + std::to_string(trunk->size());
    const GatedReLU relu(hidden);
    trunk->push_back(relu);
    const int layer = units.add_layer(relu_name, relu);
    units.connect(linear_name, *linear, layer, previous);
    previous = layer;
    if (config.dropout > 0) trunk->push_back(torch::nn::Dropout(config.dropout));
    width = hidden;
  }
  MultiHeadModel model(trunk, width, head_sizes);
  model->set_hidden_units(std::move(units));
  return model;
}

}  // namespace clx
