#pragma once
// A shared trunk with one linear head per task (task-incremental) or a single
// head over every class (domain/class-incremental).
//
// Continual-learning algorithms consolidate and prune the trunk's parameters
// ("shared parameters"); heads are task-specific and never consolidated.
#include <torch/torch.h>

#include "models/layer_tape.h"
#include "runtime/continual_net.h"

#include <string>
#include <vector>

namespace clx {

struct MlpConfig {
  std::vector<int64_t> hidden{512, 256};
  double dropout = 0.0;
};

// Parses "512,256" (or "" for no hidden layer); throws clx::Error naming `option`.
std::vector<int64_t> parse_layer_sizes(const std::string& text, const std::string& option);

class MultiHeadModelImpl : public ContinualNet {
 public:
  // `head_sizes`: one entry per head. The trunk maps inputs of `input_shape`
  // to `feature_size` features.
  MultiHeadModelImpl(torch::nn::Sequential trunk, int64_t feature_size, const std::vector<int64_t>& head_sizes);

  torch::Tensor features(const torch::Tensor& inputs) override;
  // features() through `tape`, which records the trunk's parameterised layers.
  torch::Tensor features_recorded(const torch::Tensor& inputs, LayerTape& tape) { return tape.sequential(trunk_, inputs); }
  torch::Tensor head_forward(const torch::Tensor& features, int64_t head) override;
  torch::Tensor forward(const torch::Tensor& inputs, int64_t head) { return logits(inputs, head); }

  int64_t num_heads() const override { return static_cast<int64_t>(heads_.size()); }
  std::vector<torch::Tensor> head_parameters(int64_t head) const override;
  // Named like the module tree ("trunk.1.weight").
  std::vector<std::pair<std::string, torch::Tensor>> named_shared_parameters() const override;
  const HiddenUnits& hidden_units() const override { return hidden_units_; }
  // Set by the builders below: the trunk's GatedReLU layers and what each
  // shared parameter connects.
  void set_hidden_units(HiddenUnits units) { hidden_units_ = std::move(units); }

 private:
  HiddenUnits hidden_units_;
  torch::nn::Sequential trunk_{nullptr};
  std::vector<torch::nn::Linear> heads_;
};
TORCH_MODULE(MultiHeadModel);

// Flatten -> [Linear -> ReLU -> Dropout]* ; the heads sit on the last hidden layer.
// Every ReLU is a GatedReLU: the MLP exposes its hidden units.
MultiHeadModel make_mlp(const std::vector<int64_t>& input_shape, const MlpConfig& config,
                        const std::vector<int64_t>& head_sizes);

}  // namespace clx
