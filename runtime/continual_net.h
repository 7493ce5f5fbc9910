#pragma once
// What the trainer needs from a network: a shared trunk and per-task heads.
// Concrete networks live in models/; runtime depends only on this interface.
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "runtime/hidden_units.h"
#include "runtime/named_tensors.h"

namespace clx {

class ContinualNet : public torch::nn::Module {
 public:
  virtual torch::Tensor features(const torch::Tensor& inputs) = 0;
  virtual torch::Tensor head_forward(const torch::Tensor& features, int64_t head) = 0;
  virtual int64_t num_heads() const = 0;
  // Trunk parameters: what continual-learning algorithms consolidate and prune.
  virtual std::vector<std::pair<std::string, torch::Tensor>> named_shared_parameters() const = 0;
  virtual std::vector<torch::Tensor> head_parameters(int64_t head) const = 0;
  // The parameters of head slot `head` that a stage training `tasks` can
  // change: the whole slot by default. A network whose one slot holds
  // per-task tensors (DGM's output layers and mask embeddings) gives the
  // stage's own only; the others get no gradient, and leaving them out keeps
  // them out of the optimizer's state and the gradient all-reduce.
  virtual std::vector<torch::Tensor> head_parameters_trained_by(int64_t head, const std::vector<int>& tasks) const {
    return head_parameters(head);
  }
  // The hidden units that HAT and CLNP gate (empty: the model exposes none).
  virtual const HiddenUnits& hidden_units() const {
    static const HiddenUnits none;
    return none;
  }

  // Before a checkpoint's model state is checked against and copied into
  // this network: a network that grows during a run (DGM's generator)
  // resizes its tensors to the saved shapes here. `saved` holds the
  // checkpoint's tensors by parameters_and_buffers() names.
  virtual void prepare_for_saved_state(const NamedTensors& saved) {}

  torch::Tensor logits(const torch::Tensor& inputs, int64_t head) { return head_forward(features(inputs), head); }
  std::vector<torch::Tensor> shared_parameters() const {
    std::vector<torch::Tensor> parameters;
    for (auto& item : named_shared_parameters()) parameters.push_back(item.second);
    return parameters;
  }
};

}  // namespace clx
